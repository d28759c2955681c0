"""Run the real-cluster tests last: they start (and afterwards stop) SLURM daemons, and while
slurmctld is down every `snakemake` call of other tests would pay the SLURM plugin's 10 s
`scontrol` timeout at import."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: keeps order
