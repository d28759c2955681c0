"""The evaluation's view of the feature networks.

The registry itself (weight files, :func:`load_network`, :class:`FeatureNet`, availability) lives
in :mod:`fmrirecon.features.networks`, shared with the models' frozen backbones; it is re-exported
here for the protocols. What is evaluation-specific stays here: the default layers of the
LPIPS-style perceptual distance per network.
"""

from __future__ import annotations

from ..features.networks import (  # noqa: F401  (re-exported for the evaluation)
    DEFAULT_NETWORK,
    NETWORKS,
    WEIGHT_FILES,
    FeatureNet,
    NetworkUnavailable,
    TorchvisionAlexNet,
    load_network,
    network_status,
    resolve_weights_dir,
)
from .presets import _EFFNET_PERCEPTUAL_LAYERS

#: Default LPIPS-style layers per network (five levels, like LPIPS's five AlexNet ReLUs).
PERCEPTUAL_LAYERS = {
    "efficientnet-lite0": list(_EFFNET_PERCEPTUAL_LAYERS),
    "alexnet": ["features.1", "features.4", "features.7", "features.9", "features.11"],
    "lpips-alex": ["features.1", "features.4", "features.7", "features.9", "features.11"],
    "vgg19": ["features.3", "features.8", "features.17", "features.26", "features.35"],
}

__all__ = [
    "DEFAULT_NETWORK",
    "FeatureNet",
    "NETWORKS",
    "NetworkUnavailable",
    "PERCEPTUAL_LAYERS",
    "TorchvisionAlexNet",
    "WEIGHT_FILES",
    "load_network",
    "network_status",
    "resolve_weights_dir",
]
