"""The three interchangeable pairwise-SSIM backends behind :func:`fmrirecon.evaluate.ssim.pairwise_ssim`.

All take per-image local means and variances, computed once per image (in torch by
:class:`.ssim_core.Plan`; for the C kernel, in the same order by its ``ssim_pack``), and compute only
the cross term ``filter(x * y)`` and the SSIM formula per pair:

* :func:`pairwise_eager` — plain torch ops in blocks (any device; the GPU path);
* :func:`pairwise_compiled` — a fused :func:`torch.compile` kernel (CPU);
* :func:`pairwise_native` — the C kernel ``ssim_kernel.c`` (CPU; blocks of 8 rows, tiles of
  pairs, OpenMP over tiles), built and loaded by :mod:`.ssim_native`, on inputs laid out by
  :func:`pack_native`.

Each returns the ``(N, M)`` float64 matrix; they agree with each other to ~1e-7.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch

from ..errors import InputError
from .ssim_core import Plan, filt, ssim_tail
from .ssim_native import native_library


def pairwise_eager(x, y, plan: Plan, bi: int, bj: int) -> torch.Tensor:
    """Blocks of (bi reconstructions) x (bj images) with plain torch ops (any device)."""
    n, m = x.shape[0], y.shape[0]
    out = torch.empty((n, m), dtype=torch.float64, device=x.device)
    yr_all = plan.region(y)
    uy_all, vy_all = plan.stats(yr_all)
    for i0 in range(0, n, bi):
        xr = plan.region(x[i0 : i0 + bi])
        ux, vx = plan.stats(xr)
        xr, ux, vx = xr[:, None], ux[:, None], vx[:, None]
        for j0 in range(0, m, bj):
            sl = slice(j0, j0 + bj)
            args = (xr, yr_all[None, sl], ux, uy_all[None, sl], vx, vy_all[None, sl])
            out[i0 : i0 + bi, sl] = _eager_block(*args, plan).double()
    return out


def _eager_block(xr, yr, ux, uy, vx, vy, plan: Plan) -> torch.Tensor:
    f = filt(xr * yr, plan.taps)
    return ssim_tail(f, ux, uy, vx, vy, plan.C1, plan.C2, plan.cov_norm)


def pairwise_compiled(x, y, plan: Plan, kernel: Callable, bj: int) -> torch.Tensor:
    """Loop over blocks of ``bj`` images; each reconstruction is scored against a block in one call.

    Inputs are copied into fixed buffers so the compiled kernel always sees the same shapes,
    strides and alignment (one compilation per configuration); the image block stays in cache
    while every reconstruction passes through it.
    """
    n, m = x.shape[0], y.shape[0]
    bj = max(1, min(bj, m))
    xr_all = plan.region(x)
    ux_all, vx_all = plan.stats(xr_all)
    yr_all = plan.region(y)
    uy_all, vy_all = plan.stats(yr_all)
    bx = [torch.empty((1, 1) + t.shape[1:], dtype=t.dtype, device=t.device) for t in (xr_all, ux_all, vx_all)]
    by = [torch.empty((1, bj) + t.shape[1:], dtype=t.dtype, device=t.device) for t in (yr_all, uy_all, vy_all)]
    cols = []
    for j0 in range(0, m, bj):
        nj = min(bj, m - j0)
        for buf, src in zip(by, (yr_all, uy_all, vy_all)):
            buf[0, :nj].copy_(src[j0 : j0 + nj])
            if nj < bj:
                buf[0, nj:].copy_(src[j0 + nj - 1 : j0 + nj].expand(bj - nj, *src.shape[1:]))
        rows = []
        for i in range(n):
            for buf, src in zip(bx, (xr_all, ux_all, vx_all)):
                buf[0, 0].copy_(src[i])
            rows.append(kernel(bx[0], by[0], bx[1], by[1], bx[2], by[2])[0, :nj].clone())
        cols.append(torch.stack(rows))
    return torch.cat(cols, dim=1).double()


@lru_cache(maxsize=8)
def compiled_kernel(taps: tuple[float, ...], C1: float, C2: float, cov_norm: float) -> Callable | None:
    """A ``torch.compile``d pair kernel for fixed taps and constants (None if compile is missing)."""
    if not hasattr(torch, "compile"):
        return None

    def kernel(xr, yr, ux, uy, vx, vy):
        f = filt(xr * yr, taps)
        return ssim_tail(f, ux, uy, vx, vy, C1, C2, cov_norm)

    try:
        return torch.compile(kernel, dynamic=False)
    except Exception:  # pragma: no cover - depends on the torch build
        return None


#: Output rows per block of the C kernel (its ``RB``: one AVX vector of floats).
NATIVE_ROWS = 8
#: Default tile of the C kernel: (reconstructions, images) whose row blocks a thread reuses from cache.
NATIVE_TILE = (16, 16)


def pack_native(img: torch.Tensor, plan: Plan, dll, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image inputs of the C kernel in its layout (see ``ssim_kernel.c``): ``(region, stats)``.

    ``region`` ``(N, C, LR / 8, Hp, 8)``: the filter's input region, zero-padded to
    ``Hp = ceil(Hc / 8) * 8 + K - 1`` rows and ``LR = ceil8(Wc) + ceil8(K - 1)`` columns, as panels
    of 8 columns; ``stats`` ``(N, C, ceil(Hc / 8), Wc, 2, 8)``: for each block of 8 output rows and
    each column, the local means of the 8 rows, then their (covariance-normalised) variances plus
    ``C2 / 2``. Both are written by the kernel's ``ssim_pack`` (statistics in float32, in the order
    of :func:`.ssim_core.filt`), ``chunk`` images at a time. About 12 bytes a pixel.
    """
    rb, k = NATIVE_ROWS, len(plan.taps)
    n, c = img.shape[:2]
    hc, wc = img.shape[-2] - 2 * plan.crop, img.shape[-1] - 2 * plan.crop
    nrb = -(-hc // rb)
    hp, lr = nrb * rb + k - 1, -(-wc // rb) * rb + -(-(k - 1) // rb) * rb
    region = torch.empty((n, c, lr // rb, hp, rb), dtype=torch.float32)
    stats = torch.empty((n, c, nrb, wc, 2, rb), dtype=torch.float32)
    taps = torch.tensor(plan.taps, dtype=torch.float32)
    for s in range(0, n, chunk):
        src = plan.region(img[s : s + chunk].to("cpu", torch.float32)).contiguous()
        rc = dll.ssim_pack(
            src.data_ptr(), src.shape[0] * c, hc, wc, hp, lr, taps.data_ptr(), plan.cov_norm, plan.C2,
            max(1, torch.get_num_threads()), region[s].data_ptr(), stats[s].data_ptr(),
        )  # fmt: skip
        if rc != 0:
            raise InputError(f"the native SSIM kernel refused its arguments (code {rc})")
    return region, stats


def pairwise_native(x, y, plan: Plan, tile: tuple[int, int] = NATIVE_TILE) -> torch.Tensor:
    """The whole (N, M) matrix in one call of the C kernel (CPU, float32), after :func:`pack_native`.

    ``tile``: (reconstructions, images) per tile; OpenMP threads (``torch.get_num_threads()``) take
    whole tiles. InputError when the kernel cannot be built or loaded here, or the filter taps are
    not symmetric (the caller falls back).
    """
    taps = tuple(plan.taps)
    if taps != taps[::-1]:
        raise InputError("the native SSIM kernel needs symmetric filter taps")
    dll = native_library(len(taps))
    if dll is None:
        raise InputError("the native SSIM kernel could not be built here (see the log)")
    xr, sx = pack_native(x, plan, dll)
    yr, sy = pack_native(y, plan, dll)
    n, m, c = x.shape[0], y.shape[0], x.shape[1]
    hc, wc = x.shape[-2] - 2 * plan.crop, x.shape[-1] - 2 * plan.crop
    hp, lr = xr.shape[-2], xr.shape[-3] * NATIVE_ROWS
    tp = torch.tensor(taps, dtype=torch.float32)
    out = torch.empty((n, m), dtype=torch.float64)
    rc = dll.ssim_matrix(
        xr.data_ptr(), sx.data_ptr(), n, yr.data_ptr(), sy.data_ptr(), m,
        c, hc, wc, hp, lr, tp.data_ptr(),
        plan.C1, plan.C2, plan.cov_norm, max(1, tile[0]), max(1, tile[1]),
        max(1, torch.get_num_threads()), out.data_ptr(),
    )  # fmt: skip
    if rc != 0:
        raise InputError(f"the native SSIM kernel refused its arguments (code {rc})")
    return out
