"""The embedded simulated GOD-like dataset.

``images`` draws procedural object images with known foreground masks and categories, ``voxels``
simulates a subject's voxel responses (retinotopic pRFs in V1–V4, semantic tuning in LOC/FFA/PPA),
and ``dataset`` writes everything in GOD's published layouts (``simulate_dataset``).
"""
