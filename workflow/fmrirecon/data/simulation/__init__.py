"""The embedded simulated datasets.

``images`` draws procedural object images with known foreground masks and categories, ``voxels``
simulates a subject's voxel responses (retinotopic pRFs in V1–V4, semantic tuning in LOC/FFA/PPA).
``simulation.design`` picks the experiment and the layout they are written in (rule
``simulate_dataset``): ``god`` (default, :mod:`.dataset`) a GOD-like block design in GOD's
layouts; ``nsd`` (:mod:`.nsd_design`) NSD's design (own images per subject, a shared test set)
in NSD's AWS layout. The functions below are what the DAG and the config checks ask of a design.
"""

from ...errors import InputError
from ..readers import god_bdata, god_npz
from . import nsd_design
from .god_layouts import LAYOUTS

GOD = "god"
#: design name -> the ``simulation:`` keys only that design reads
_OWN_KEYS = {GOD: (), nsd_design.NAME: (nsd_design.NAME,)}  # its block is named like it


def design_of(simulation: dict) -> str:
    return simulation.get("design", GOD)


def design_settings(simulation: dict) -> dict:
    """The ``simulation:`` block as the chosen design sees it: without the other designs' keys,
    and for the default design without ``design`` itself, so that adding a design changes no
    existing provenance hash or rule parameter."""
    design = design_of(simulation)
    other = {k for d, keys in _OWN_KEYS.items() if d != design for k in keys}
    drop = other | ({"design"} if design == GOD else set())
    return {k: v for k, v in simulation.items() if k not in drop}


def simulation_for(dataset: dict, simulation: dict) -> dict:
    """The settings rule ``simulate_dataset`` passes for ``dataset``: ``simulation`` (as
    :func:`design_settings` gives it), plus ``layouts: [read_as]`` when the GOD design must also
    write the tree of another published layout (:mod:`.god_layouts`) for the dataset's reader.
    Datasets read in GOD's own layouts get ``simulation`` unchanged."""
    if design_of(simulation) == GOD and dataset["read_as"] in LAYOUTS:
        return {**simulation, "layouts": [dataset["read_as"]]}
    return simulation


def generated_dataset(dataset: dict, raw: str, simulation: dict) -> dict:
    """A simulated dataset's config entry as its reader sees it: the folder ``raw`` that rule
    ``simulate_dataset`` writes, read through ``read_as``. GOD design: GOD's published layouts
    (see :mod:`.dataset`) with the simulator's own unlabeled pool, unpaired images and gallery;
    NSD design: :func:`.nsd_design.reader_view`."""
    if design_of(simulation) == nsd_design.NAME:
        return nsd_design.reader_view(dataset, raw, simulation)
    if dataset["read_as"] in LAYOUTS:  # e.g. the BOLD5000 tree under raw/bold5000 (.god_layouts)
        return LAYOUTS[dataset["read_as"]].reader_view(dataset, raw, simulation)
    return {
        **dataset,
        "format": dataset["read_as"],
        "path": raw,
        "images_npz": f"images_{simulation['image_size']}.npz",
        "unlabeled_fmri": f"{raw}/Subject{{subject}}_unlabeled.h5",
        "unpaired_images": dataset["unpaired_images"] or f"{raw}/images/unpaired",
        "gallery_images": dataset["gallery_images"] or f"{raw}/images/gallery",
    }


def truth_per_voxel(dataset: dict, simulation: dict) -> bool:
    """Whether truth.h5's per-subject arrays line up with what the dataset's reader reads (rows =
    its training / test images, columns = its voxels), which the oracle and the true noise
    ceilings need. Not for the Algonauts twin: its columns are surface vertices, its split its own.
    The image truth (foreground, categories) is matched by name or id and serves every reader."""
    if design_of(simulation) == nsd_design.NAME:
        return dataset["read_as"] != nsd_design.ALGONAUTS
    if dataset["read_as"] in LAYOUTS:
        return LAYOUTS[dataset["read_as"]].TRUTH_PER_VOXEL
    return True


def simulated_rois(dataset: dict, simulation: dict, roster: tuple[str, ...]) -> set[str]:
    """The ROI names the generated files define for ``dataset`` (``roster``: its reader's)."""
    if design_of(simulation) == nsd_design.NAME:
        return nsd_design.roi_names(dataset["read_as"])
    if dataset["read_as"] in LAYOUTS:
        return LAYOUTS[dataset["read_as"]].roi_names(dataset, simulation)
    from .dataset import COMPOSITES  # the simulator writes the roster and GOD's unions

    if dataset.get("roi_source") == "nifti":  # the label volume has the atomic ROIs only
        return set(roster)
    return set(roster) | set(COMPOSITES)


def check_simulated(dataset: dict, simulation: dict, where: str) -> None:
    """InputError (one line) where a simulated dataset cannot be read as configured."""
    design = design_of(simulation)
    if design == nsd_design.NAME:
        if dataset["read_as"] not in (nsd_design.NAME, nsd_design.ALGONAUTS):
            raise InputError(f"config error at {where}.read_as: simulation.design {design} writes the "
                             f"{nsd_design.NAME} layout and its {nsd_design.ALGONAUTS} twin; set read_as: "
                             f"{nsd_design.NAME} or {nsd_design.ALGONAUTS}")  # fmt: skip
        problem = nsd_design.check(simulation, dataset, "simulation", where)
        if problem:
            raise InputError(problem)
    elif dataset["read_as"] not in (god_bdata.READER.name, god_npz.READER.name, *LAYOUTS):
        hint = f"; set simulation.design: {nsd_design.NAME} for that layout" if dataset["read_as"] == nsd_design.NAME else ""
        layouts = ", ".join((god_bdata.READER.name, god_npz.READER.name, *LAYOUTS))
        raise InputError(f"config error at {where}.read_as: simulation.design {design} writes GOD's layouts "
                         f"and their twins ({layouts}){hint}")  # fmt: skip
