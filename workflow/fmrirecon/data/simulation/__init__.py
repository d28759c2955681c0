"""The embedded simulated GOD-like dataset.

``images`` draws procedural object images with known foreground masks and categories, ``voxels``
simulates a subject's voxel responses (retinotopic pRFs in V1–V4, semantic tuning in LOC/FFA/PPA),
and ``dataset`` writes everything in GOD's published layouts (``simulate_dataset``).
"""


def generated_dataset(dataset: dict, raw: str, simulation: dict) -> dict:
    """A simulated dataset's config entry as its reader sees it: the folder ``raw`` that rule
    ``simulate_dataset`` writes holds GOD's published layouts (see :mod:`.dataset`), read through
    ``read_as``, with the simulator's own unlabeled pool, unpaired images and gallery."""
    return {
        **dataset,
        "format": dataset["read_as"],
        "path": raw,
        "images_npz": f"images_{simulation['image_size']}.npz",
        "unlabeled_fmri": f"{raw}/Subject{{subject}}_unlabeled.h5",
        "unpaired_images": dataset["unpaired_images"] or f"{raw}/images/unpaired",
        "gallery_images": dataset["gallery_images"] or f"{raw}/images/gallery",
    }
