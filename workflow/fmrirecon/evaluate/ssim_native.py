"""Build, cache and load the C pair kernel ``ssim_kernel.c`` without trusting what is on disk.

The kernel is compiled with the system C compiler (``$CC``, else ``gcc``, else ``cc``) at first
use and cached so that parallel evaluation jobs do not each pay for a compile. The cache is
treated as untrusted input:

* Folder: ``$FMRIRECON_CACHE``, else ``~/.cache/fmrirecon``, created 0700. It is refused (with a
  log warning; the kernel is then built in a private temporary folder for this process only) when
  it is not owned by the current user or is group/world-writable. Everything inside is read and
  written through one descriptor of that checked folder, so a folder swapped in afterwards is
  never used.
* Key: sha256 over the kernel source, the tap count, the compiler (path, ``--version``, what
  ``-march=native`` resolves to), the flag sets, and the CPU (``platform.machine()`` plus model and
  feature flags from ``/proc/cpuinfo``), so nodes of a shared home with different CPUs never share a
  ``-march=native`` build.
* Integrity: next to each library we write a record ``ssim-<key>.json`` holding the library's
  sha256; the library file is named after that digest. A library is loaded only when it is a
  private regular file of the current user whose sha256 equals the record's; anything else
  (planted, swapped, truncated, no record) is left alone and the kernel is rebuilt.
* Builds happen in a ``tempfile.mkdtemp`` folder that is always removed. A failed compile logs
  the first lines of the compiler's stderr; when no flag set works, :func:`native_library` returns
  None and :func:`fmrirecon.evaluate.ssim.pairwise_ssim` uses its torch backends.

No other native library is ever loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from functools import lru_cache
from importlib import resources

log = logging.getLogger(__name__)

KERNEL_FILE = "ssim_kernel.c"
#: The functions the kernel exports (see ``ssim_kernel.c``).
ENTRY_POINTS = ("ssim_matrix", "ssim_pack")
CACHE_ENV = "FMRIRECON_CACHE"
#: Compiler flag sets, tried in order; the first that compiles and loads is used.
FLAG_SETS = (("-O3", "-march=native", "-fopenmp"), ("-O3", "-fopenmp"), ("-O3",))
_STDERR_LINES = 8
_MAX_LIBRARY_BYTES = 64 << 20
_CPUINFO_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags", "isa", "Features",
                   "CPU implementer", "CPU architecture", "CPU variant", "CPU part")  # fmt: skip


def kernel_source() -> bytes:
    """The C source shipped with the package (``fmrirecon/evaluate/ssim_kernel.c``)."""
    return resources.files(__package__).joinpath(KERNEL_FILE).read_bytes()


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.expanduser("~/.cache/fmrirecon")


def native_library(taps: int = 11):
    """The C pair kernel for ``taps`` filter taps as a ``ctypes`` library, or None when no compiler
    works here. Once per process and (taps, compiler, cache folder); see the module docstring."""
    cc = compiler()
    if not cc:
        return None
    return _cached_library(int(taps), cc, cache_root())


@lru_cache(maxsize=8)
def _cached_library(taps: int, cc: str, root: str):
    return load_library(taps, cc, root)


def load_library(taps: int, cc: str, root: str):
    """Load the verified cached build from ``root``, else build (and cache it when ``root`` is safe)."""
    src = kernel_source()
    key = cache_key(src, taps, cc)
    dirfd = open_private_dir(root)
    try:
        dll = _load_cached(dirfd, root, key) if dirfd is not None else None
        if dll is None:
            dll, data, flags = _build(src, taps, cc)
            if dll is None:
                return None
            if dirfd is not None:
                _store(dirfd, root, key, data, {"flags": list(flags), "taps": taps, "compiler": cc})
    finally:
        if dirfd is not None:
            os.close(dirfd)
    fp, ip, ff = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    # ssim_matrix(X, SX, n, Y, SY, m, C, Hc, Wc, Hp, LR, taps, C1, C2, cov_norm, ti, tj, threads, out)
    dll.ssim_matrix.argtypes = [fp, fp, ip, fp, fp, ip, ip, ip, ip, ip, ip, fp, ff, ff, ff, ip, ip, ip, fp]
    dll.ssim_matrix.restype = ctypes.c_int
    # ssim_pack(src, count, Hc, Wc, Hp, LR, taps, cov_norm, C2, threads, R, S)
    dll.ssim_pack.argtypes = [fp, ip, ip, ip, ip, ip, fp, ff, ff, ip, fp, fp]
    dll.ssim_pack.restype = ctypes.c_int
    return dll


# --------------------------------------------------------------------------------------------
# cache key


def cache_key(src: bytes, taps: int, cc: str) -> str:
    """Hex key of one build: source, taps, flag sets, compiler and CPU identity."""
    h = hashlib.sha256()
    for part in (src, str(int(taps)).encode(), json.dumps(FLAG_SETS).encode(), toolchain_identity(cc).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


@lru_cache(maxsize=4)
def toolchain_identity(cc: str) -> str:
    """Compiler path and version, what ``-march=native`` resolves to, and the CPU (JSON text)."""
    return json.dumps({
        "compiler": cc,
        "resolved": shutil.which(cc) or cc,
        "version": _stdout([cc, "--version"]),
        "march_native": _stdout([cc, "-march=native", "-dM", "-E", "-x", "c", os.devnull]),
        "cpu": cpu_identity(),
    }, sort_keys=True)  # fmt: skip


def cpu_identity() -> list:
    """``platform.machine()`` and the model/feature fields of the first CPU in ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break
                    continue
                k, _, v = line.partition(":")
                if k.strip() in _CPUINFO_FIELDS:
                    fields[k.strip()] = v.strip()
    except OSError:
        pass
    return [platform.machine(), platform.processor(), sorted(fields.items())]


def _stdout(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


# --------------------------------------------------------------------------------------------
# the private cache folder


def open_private_dir(root: str) -> int | None:
    """A descriptor of ``root`` (created 0700) if it is ours and not group/world-writable, else None."""
    if not (hasattr(os, "geteuid") and hasattr(os, "O_DIRECTORY")):
        return None
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        log.warning("SSIM kernel cache %s is unusable (%s): building in a private temporary folder", root, exc)
        return None
    st = os.fstat(fd)
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"it is owned by uid {st.st_uid}, not by the current user (uid {os.geteuid()})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"it is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        os.close(fd)
        log.warning("refusing the SSIM kernel cache %s: %s; building in a private temporary folder "
                    "instead (use a private folder for $%s)", root, problem, CACHE_ENV)  # fmt: skip
        return None
    return fd


def _record_name(key: str) -> str:
    return f"ssim-{key}.json"


def _library_name(key: str, digest: str) -> str:
    return f"ssim-{key}-{digest[:16]}.so"


def _read_private(dirfd: int, name: str, limit: int) -> bytes:
    """Bytes of ``name`` in the folder: a regular file (no symlink) of ours, not writable by others."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dirfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise OSError(f"{name} is not a private regular file of the current user")
        if st.st_size > limit:
            raise OSError(f"{name} is larger than {limit} bytes")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load_cached(dirfd: int, root: str, key: str):
    """The cached library if its record exists and its sha256 matches; None otherwise."""
    try:
        record = json.loads(_read_private(dirfd, _record_name(key), 1 << 16))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the SSIM kernel record in %s (%s): rebuilding", root, exc)
        return None
    if not isinstance(record, dict):
        record = {}
    digest = record.get("sha256")
    if record.get("key") != key or not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        log.warning("ignoring a malformed SSIM kernel record in %s: rebuilding", root)
        return None
    name = _library_name(key, digest)
    try:
        data = _read_private(dirfd, name, _MAX_LIBRARY_BYTES)
    except OSError as exc:
        log.warning("not loading the cached SSIM kernel %s (%s): rebuilding", os.path.join(root, name), exc)
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        log.warning("the cached SSIM kernel %s does not match the digest recorded when it was built: "
                    "not loading it, rebuilding", os.path.join(root, name))  # fmt: skip
        return None
    try:
        dll = ctypes.CDLL(_path_in(dirfd, root, name))
        if not all(hasattr(dll, entry) for entry in ENTRY_POINTS):
            raise AttributeError(f"it lacks one of {ENTRY_POINTS}")
        return dll
    except (OSError, AttributeError) as exc:
        log.warning("could not load the cached SSIM kernel %s (%s): rebuilding", os.path.join(root, name), exc)
        return None


def _path_in(dirfd: int, root: str, name: str) -> str:
    """A path to ``name`` inside the folder the descriptor refers to (even if ``root`` was swapped)."""
    proc = f"/proc/self/fd/{dirfd}"
    if os.path.isdir(proc):
        return f"{proc}/{name}"
    st, now = os.fstat(dirfd), os.stat(root)
    if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
        raise OSError(f"{root} changed while it was in use")
    return os.path.join(root, name)


def _store(dirfd: int, root: str, key: str, data: bytes, meta: dict) -> None:
    """Write the library (named by its digest), then its record; each atomically."""
    digest = hashlib.sha256(data).hexdigest()
    record = {"key": key, "sha256": digest, "library": _library_name(key, digest), **meta}
    try:
        _write_atomic(dirfd, _library_name(key, digest), data, 0o700)
        _write_atomic(dirfd, _record_name(key), json.dumps(record, indent=1).encode(), 0o600)
    except OSError as exc:
        log.warning("could not cache the SSIM kernel in %s (%s): later processes will rebuild it", root, exc)


def _write_atomic(dirfd: int, name: str, data: bytes, mode: int) -> None:
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode, dir_fd=dirfd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dirfd)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# building


def _build(src: bytes, taps: int, cc: str):
    """Compile and load in a private temporary folder (always removed): (dll, bytes, flags) or Nones."""
    tmp = tempfile.mkdtemp(prefix="fmrirecon-ssim-")
    try:
        source = os.path.join(tmp, KERNEL_FILE)
        built = os.path.join(tmp, f"ssim_matrix_k{taps}.so")
        with open(source, "wb") as fh:
            fh.write(src)
        for flags in FLAG_SETS:
            cmd = [cc, *flags, f"-DKT={int(taps)}", "-shared", "-fPIC", "-o", built, source]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("compiling the native SSIM kernel (%s) failed: %s", " ".join(cmd[:-3]), exc)
                continue
            if proc.returncode != 0:
                head = "\n".join(proc.stderr.strip().splitlines()[:_STDERR_LINES])
                log.warning("compiling the native SSIM kernel (%s) failed with exit code %d:\n%s",
                            " ".join(cmd[:-3]), proc.returncode, head)  # fmt: skip
                continue
            try:
                with open(built, "rb") as fh:
                    data = fh.read()
                dll = ctypes.CDLL(built)
                if not all(hasattr(dll, name) for name in ENTRY_POINTS):
                    raise AttributeError(f"the built library lacks one of {ENTRY_POINTS}")
            except (OSError, AttributeError) as exc:
                log.warning("loading the native SSIM kernel built with %s failed: %s", " ".join(flags), exc)
                continue
            return dll, data, flags
        log.warning("no working build of the native SSIM kernel with %s: using the torch backends", cc)
        return None, None, None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
