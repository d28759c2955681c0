"""Benchmark: the pairwise-SSIM matrix behind 2-way identification, batched torch vs scikit-image.

At NSD scale (N = 982 test images, 425 px, grey, the MindEye/Brain-Diffuser SSIM recipe) the
2-way identification of paper 000 / MinD-Vis needs SSIM for all N x N (reconstruction, image)
pairs. This script times :func:`fmrirecon.evaluate.ssim.pairwise_ssim` on the full matrix and
``skimage.metrics.structural_similarity`` on a random subsample of the same pairs (float64 images
from ``rgb2gray``, as a plain skimage loop would use), extrapolates skimage to all N^2 pairs, and
prints the speed-up (target: at least 140x wall-clock, issue 14) and the largest absolute
difference on the subsampled pairs (target: under 1e-4). The batched time covers everything
``pairwise_ssim`` does (per-image statistics included); the CPUs it may use, the threads it ran
with, the throughput (pairs/s) and the load average around it are printed too, since other
processes on the machine slow it down.

    python benchmarks/bench_pairwise_ssim.py --n 982 --size 425 --subsample-pairs 200

Synthetic images (smooth random colour fields plus texture; reconstructions are blurred, noisy
copies) stand in for the NSD stimuli: SSIM's cost does not depend on content.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from fmrirecon.evaluate.metrics import identification_scores
from fmrirecon.evaluate.ssim import NSD_SSIM, pairwise_ssim, prepare_images, ssim_settings


def synthetic_pairs(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 truth and reconstruction images (n, size, size, 3), made in batches to bound memory."""
    gen = torch.Generator().manual_seed(seed)
    truth = np.empty((n, size, size, 3), dtype=np.uint8)
    recon = np.empty_like(truth)
    for s in range(0, n, 64):
        b = min(64, n - s)
        coarse = torch.rand(b, 3, 8, 8, generator=gen)
        img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        img = img + 0.15 * torch.rand(b, 3, size, size, generator=gen)
        img = img.clamp(0, 1)
        rec = F.avg_pool2d(img, 5, stride=1, padding=2) + 0.1 * torch.randn(img.shape, generator=gen)
        truth[s : s + b] = (img.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        recon[s : s + b] = (rec.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return recon, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=982, help="images (NSD shared test set: 982)")
    ap.add_argument("--size", type=int, default=425, help="resolution in px (NSD recipe: 425)")
    ap.add_argument("--subsample-pairs", type=int, default=200, help="pairs timed with skimage")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--backend", default="auto", choices=["auto", "native", "compiled", "eager"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = ssim_settings(NSD_SSIM, resolution=args.size)
    print(f"pairwise SSIM benchmark: N={args.n}, {args.size} px, grey, Gaussian sigma 1.5, "
          f"data_range 1, population covariance ({args.n * args.n:,} pairs)")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs ({usable} usable), "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {args.device}")

    t = time.perf_counter()
    recon, truth = synthetic_pairs(args.n, args.size, args.seed)
    x = prepare_images(recon, resolution=args.size, grey=True, device=args.device)
    y = prepare_images(truth, resolution=args.size, grey=True, device=args.device)
    print(f"images made and prepared in {time.perf_counter() - t:.1f} s")

    # warm-up on a tiny block with the same shapes: compilation (cached on disk after a first run)
    t = time.perf_counter()
    info: dict = {}
    pairwise_ssim(x[:2], y[:10], settings, backend=args.backend, info=info)
    warm = time.perf_counter() - t

    load0 = os.getloadavg()[0]
    t, tc = time.perf_counter(), time.process_time()
    info = {}
    sim = pairwise_ssim(x, y, settings, backend=args.backend, info=info)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    batched, batched_cpu = time.perf_counter() - t, time.process_time() - tc
    sim = sim.cpu().numpy()
    where = f"{torch.get_num_threads()} threads" if x.device.type == "cpu" else str(x.device)
    print(f"batched ({info['backend']}, {where}): {batched:.1f} s wall, "
          f"{batched_cpu:.1f} s CPU ({batched_cpu / batched:.2f} cores busy) for {args.n * args.n:,} pairs: "
          f"{args.n**2 / batched:,.0f} pairs/s, {batched / args.n**2 * 1e6:.1f} us/pair wall; "
          f"warm-up/compile {warm:.1f} s; load average before {load0:.2f}, after {os.getloadavg()[0]:.2f}")

    # skimage on a subsample of the same pairs, from float64 grey images as rgb2gray returns them
    rng = np.random.default_rng(args.seed)
    pairs = rng.integers(0, args.n, size=(args.subsample_pairs, 2))
    rgb_x = prepare_images(recon[np.unique(pairs[:, 0])], resolution=args.size, dtype=torch.float64)
    rgb_y = prepare_images(truth[np.unique(pairs[:, 1])], resolution=args.size, dtype=torch.float64)
    gx = {int(i): rgb2gray(a.permute(1, 2, 0).numpy()) for i, a in zip(np.unique(pairs[:, 0]), rgb_x)}
    gy = {int(j): rgb2gray(b.permute(1, 2, 0).numpy()) for j, b in zip(np.unique(pairs[:, 1]), rgb_y)}
    ref = np.empty(len(pairs))
    t, tc = time.perf_counter(), time.process_time()
    for k, (i, j) in enumerate(pairs):
        ref[k] = structural_similarity(
            gx[int(i)], gy[int(j)], gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
    sk_total, sk_cpu = time.perf_counter() - t, time.process_time() - tc
    per_pair = sk_total / len(pairs)
    extrapolated = per_pair * args.n**2
    extrapolated_cpu = sk_cpu / len(pairs) * args.n**2
    diff = np.abs(sim[pairs[:, 0], pairs[:, 1]] - ref).max()
    print(f"skimage: {per_pair * 1e3:.2f} ms/pair wall ({sk_cpu / len(pairs) * 1e3:.2f} ms CPU) over "
          f"{len(pairs)} pairs -> extrapolated {extrapolated:.0f} s ({extrapolated / 3600:.2f} h) for all pairs")
    print(f"speed-up: {extrapolated / batched:.0f}x wall-clock (target >= 140x); "
          f"{extrapolated_cpu / batched_cpu:.0f}x per CPU-second (skimage is single-threaded)")
    print(f"max |batched - skimage| over the subsample: {diff:.2e} (target < 1e-4)")
    acc = identification_scores(sim, n_way=2, mode="exact").mean()
    print(f"pairwise-SSIM 2-way accuracy of the synthetic reconstructions: {acc:.4f}")


if __name__ == "__main__":
    main()
