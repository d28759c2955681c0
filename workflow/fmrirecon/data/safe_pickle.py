"""Read pickled data without executing the pickle: a restricted unpickler for small metadata files.

Some published datasets ship metadata as pickles, e.g. the Algonauts 2023 ``mapping_<atlas>.npy``
files: ``np.save`` of a ``dict`` (label int → ROI name), i.e. a ``.npy`` header for a 0-d object
array followed by a pickle of that array. Loading it with numpy's pickle support switched on
would run whatever callables such a file names. :func:`load_pickled` reads it without that risk:

1. every opcode is listed first (``pickletools.genops``, which executes nothing); only the opcodes
   that build ints, floats, strings, bytes, None/bools, tuples, lists and dicts are admitted, plus
   ``GLOBAL``/``STACK_GLOBAL``/``REDUCE``/``BUILD`` for the numpy wrappers below (no ``INST``,
   ``OBJ``, ``NEWOBJ``, extension codes, persistent ids, sets or out-of-band buffers);
2. globals resolve through an allow-list, and none of them is the real object:
   ``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
   ``numpy[._]core.multiarray.scalar`` and ``_codecs.encode`` (how protocols 0-2 write ``bytes``)
   become inert stand-ins that check and record their arguments, so no numpy or Python callable is
   ever invoked with arguments taken from the file;
3. the stand-ins are turned into plain values afterwards: an object array becomes its element
   (0-d) or an object ndarray of plain values, a numeric array a numpy array read from its bytes
   (``np.frombuffer`` with a plain bool/int/uint/float dtype), a numpy scalar a Python number.

Anything else (``os.system`` via ``__reduce__``, ``builtins.eval``, a class instance, a truncated
file) raises :class:`~fmrirecon.errors.InputError` naming the file, before anything runs.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from ..errors import InputError

#: Opcodes a metadata pickle may use (see the module docstring).
ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
})  # fmt: skip

#: Largest file read (metadata pickles are a few hundred bytes).
MAX_BYTES = 16 << 20
#: Largest number of elements of one pickled array.
MAX_ELEMENTS = 10_000_000
#: Deepest nesting of containers in the result.
MAX_DEPTH = 64

#: Type codes numpy writes when it pickles a plain dtype (``numpy.dtype('i8', False, True)``).
_DTYPE_CODES = frozenset({"O4", "O8", "b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")


class _Refused(pickle.UnpicklingError):
    """A pickle that tries something the allow-list does not admit."""


class _Inert:
    """Base of the stand-ins: no ``__dict__``; ``BUILD`` on anything but an array/dtype is refused."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Refused(f"BUILD on {type(self).__name__} is not admitted")


class _NdarrayToken(_Inert):
    """``numpy.ndarray``: only ever an argument of ``_reconstruct``; calling it is refused."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise _Refused("calling numpy.ndarray is not admitted")


class _DTypeStub(_Inert):
    """A recorded ``numpy.dtype(code, align, copy)`` plus its BUILD state (byte order)."""

    __slots__ = ("built", "byteorder", "code")

    def __init__(self, code: str):
        self.code, self.byteorder, self.built = code, "|", False

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise _Refused(f"unsupported numpy dtype state {state!r:.80}")
        byteorder, rest = state[1], state[2:5]
        if byteorder not in ("<", ">", "|", "=") or any(x is not None for x in rest):
            raise _Refused("only plain (non-structured) numpy dtypes are admitted")
        self.byteorder, self.built = byteorder, True

    def numeric(self) -> np.dtype:
        """The real dtype of a plain bool/int/uint/float code (never an object dtype)."""
        dt = np.dtype(self.code)
        if dt.kind not in "biuf":
            raise _Refused(f"numpy dtype {self.code!r} is not a plain number type")
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt

    @property
    def is_object(self) -> bool:
        return np.dtype(self.code).kind == "O"


class _DTypeFactory(_Inert):
    """``numpy.dtype``: records a simple type code."""

    __slots__ = ()

    def __call__(self, code, align=False, copy=True):
        if not isinstance(code, str) or code not in _DTYPE_CODES:
            raise _Refused(f"numpy dtype {code!r:.40} is not admitted")
        if not isinstance(align, bool) or not isinstance(copy, bool):
            raise _Refused("numpy dtype flags must be booleans")
        return _DTypeStub(code)


class _ArrayStub(_Inert):
    """A recorded ``_reconstruct(ndarray, (0,), b'b')``; its BUILD state holds shape, dtype, data."""

    __slots__ = ("built", "value")

    def __init__(self):
        self.value, self.built = None, False

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise _Refused("unsupported numpy array state")
        version, shape, dtype, fortran, data = state
        if version != 1 or not isinstance(dtype, _DTypeStub) or not isinstance(fortran, bool):
            raise _Refused("unsupported numpy array state")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise _Refused(f"numpy array shape {shape!r:.60} is not a tuple of sizes")
        size = math.prod(shape)
        if size > MAX_ELEMENTS:
            raise _Refused(f"numpy array of {size} elements exceeds {MAX_ELEMENTS}")
        order = "F" if fortran else "C"
        if dtype.is_object:
            if not isinstance(data, list) or len(data) != size:
                raise _Refused("object array data must be a list of its elements")
            flat = np.empty(size, dtype=object)
            for i, item in enumerate(data):
                flat[i] = item
            self.value = flat.reshape(shape, order=order)
        else:
            dt = dtype.numeric()
            if not isinstance(data, bytes) or len(data) != size * dt.itemsize:
                raise _Refused("numeric array data must be its raw bytes")
            self.value = np.frombuffer(data, dtype=dt).reshape(shape, order=order).copy()
        self.built = True


class _ReconstructFactory(_Inert):
    """``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` → an empty array stand-in."""

    __slots__ = ()

    def __call__(self, subtype, shape, code):
        if not isinstance(subtype, _NdarrayToken) or shape != (0,) or code not in (b"b", "b"):
            raise _Refused("numpy _reconstruct is admitted only as numpy writes plain arrays")
        return _ArrayStub()


class _ScalarFactory(_Inert):
    """``numpy.core.multiarray.scalar(dtype, bytes)`` → the Python number (bool/int/float)."""

    __slots__ = ()

    def __call__(self, dtype, data=None):
        if not isinstance(dtype, _DTypeStub) or not isinstance(data, bytes):
            raise _Refused("numpy scalar is admitted only for plain number types")
        dt = dtype.numeric()
        if len(data) != dt.itemsize:
            raise _Refused("numpy scalar data has the wrong size")
        return np.frombuffer(data, dtype=dt)[0].item()


class _LatinEncode(_Inert):
    """``_codecs.encode(text, 'latin1')``: how pickle protocols 0-2 write ``bytes``."""

    __slots__ = ()

    def __call__(self, text, encoding="utf-8"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _Refused("_codecs.encode is admitted only as pickle writes bytes (latin1)")
        return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file, encoding="ASCII")
        self._globals = {
            ("numpy", "ndarray"): _NdarrayToken(),
            ("numpy", "dtype"): _DTypeFactory(),
            ("_codecs", "encode"): _LatinEncode(),
            **{(m, "_reconstruct"): _ReconstructFactory() for m in _NUMPY_MODULES},
            **{(m, "scalar"): _ScalarFactory() for m in _NUMPY_MODULES},
        }

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not admitted") from None

    def persistent_load(self, pid):
        raise _Refused("persistent ids are not admitted")


def _check_opcodes(data: bytes) -> None:
    for opcode, _arg, _pos in pickletools.genops(data):
        if opcode.name not in ALLOWED_OPCODES:
            raise _Refused(f"opcode {opcode.name} is not admitted")


def _materialize(obj, depth: int = 0, active: set | None = None):
    """Replace the stand-ins by plain values; refuse cycles and unfinished stand-ins."""
    if depth > MAX_DEPTH:
        raise _Refused(f"nesting deeper than {MAX_DEPTH}")
    active = set() if active is None else active
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, _ArrayStub):
        if not obj.built:
            raise _Refused("a numpy array without its state")
        value = obj.value
        if value.dtype != object:
            return value
        items = [_materialize(v, depth + 1, active) for v in value.ravel().tolist()]
        if value.ndim == 0:
            return items[0]
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            out[i] = item
        return out.reshape(value.shape)
    if isinstance(obj, (list, tuple, dict)):
        if id(obj) in active:
            raise _Refused("a recursive container")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                out = {}
                for k, v in obj.items():
                    key, value = _materialize(k, depth + 1, active), _materialize(v, depth + 1, active)
                    try:
                        out[key] = value
                    except TypeError:
                        raise _Refused(f"an unhashable dict key of type {type(key).__name__}") from None
                return out
            items = [_materialize(v, depth + 1, active) for v in obj]
            return items if isinstance(obj, list) else tuple(items)
        finally:
            active.discard(id(obj))
    raise _Refused(f"a value of type {type(obj).__name__}")


def loads(data: bytes, source: str = "<bytes>"):
    """Unpickle ``data`` under the allow-list; InputError naming ``source`` if it is refused."""
    try:
        _check_opcodes(data)
        return _materialize(_RestrictedUnpickler(io.BytesIO(data)).load())
    except _Refused as exc:
        raise InputError(f"{source}: refused to unpickle: {exc} (only plain data and numpy "
                         "arrays/scalars of numbers are read from pickles)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, EOFError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{source}: not a readable pickle (corrupt or truncated?): "
                         f"{type(exc).__name__}: {exc}") from None


def load_pickled(path) -> object:
    """Read a pickled value from ``path`` without executing it.

    ``path`` is a ``.npy`` file whose array is an object array (``np.save`` of a dict, list, ...;
    the 0-d case returns the element itself, like ``np.load(...).item()``) or a raw pickle file.
    A ``.npy`` file of a plain numeric array is returned as that array (read with
    ``allow_pickle=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size} bytes, more than the {MAX_BYTES} a pickled metadata file may have")
    raw = path.read_bytes()
    if not raw.startswith(b"\x93NUMPY"):
        return loads(raw, str(path))
    fh = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unknown .npy format version {version}")
    except (ValueError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable .npy file: {exc}") from None
    if not dtype.hasobject:
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy file: {exc}") from None
    if dtype.kind != "O":
        raise InputError(f"{path}: structured arrays with objects ({dtype}) are not read")
    value = loads(raw[fh.tell():], str(path))
    got_shape = () if not isinstance(value, np.ndarray) else value.shape
    if got_shape != tuple(shape):
        raise InputError(f"{path}: the pickled array has shape {got_shape}, its header says {tuple(shape)}")
    return value
