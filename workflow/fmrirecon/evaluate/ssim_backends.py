"""The three interchangeable pairwise-SSIM backends behind :func:`fmrirecon.evaluate.ssim.pairwise_ssim`.

All take per-image local means and variances (computed once, in torch, by :class:`.ssim_core.Plan`)
and compute only the cross term ``filter(x * y)`` and the SSIM formula per pair:

* :func:`pairwise_eager` — plain torch ops in blocks (any device; the GPU path);
* :func:`pairwise_compiled` — a fused :func:`torch.compile` kernel (CPU);
* :func:`pairwise_native` — the C kernel ``ssim_kernel.c`` (CPU; tiles of pairs x bands of rows,
  OpenMP over tiles), built and loaded by :mod:`.ssim_native`.

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


def pairwise_native(x, y, plan: Plan, tile: int = 8, band: int = 64) -> torch.Tensor:
    """The whole (N, M) matrix in one call of the C kernel (CPU, float32 statistics).

    InputError when the kernel cannot be built or loaded here (the caller falls back).
    """
    dll = native_library(len(plan.taps))
    if dll is None:
        raise InputError("the native SSIM kernel could not be built here (see the log)")
    xr = plan.region(x).float().contiguous()
    ux, vx = (t.contiguous() for t in plan.stats(xr))
    yr = plan.region(y).float().contiguous()
    uy, vy = (t.contiguous() for t in plan.stats(yr))
    n, m, c = x.shape[0], y.shape[0], x.shape[1]
    hc, wc = ux.shape[-2], ux.shape[-1]
    taps = torch.tensor(plan.taps, dtype=torch.float32)
    out = torch.empty((n, m), dtype=torch.float64)
    dll.ssim_matrix(
        xr.data_ptr(), ux.data_ptr(), vx.data_ptr(), n,
        yr.data_ptr(), uy.data_ptr(), vy.data_ptr(), m,
        c, hc, wc, taps.data_ptr(),
        plan.C1, plan.C2, plan.cov_norm, tile, band, max(1, torch.get_num_threads()), out.data_ptr(),
    )  # fmt: skip
    return out
