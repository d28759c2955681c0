# fmrirecon: reconstruct seen images from fMRI, reproducibly. The table of contents of the DAG.
import copy
import os
import sys
from pathlib import Path

from snakemake.common.configfile import load_configfile
from snakemake.utils import min_version, update_config

min_version("9.0")


# the repository on disk, also when this Snakefile is used as a module (repository_on_disk)
include: "workflow/rules/module.smk"


# Paths of the workflow's own files are relative to this one, outputs to the working directory.
REPO_DIR = repository_on_disk(workflow.current_basedir)
if os.path.join(REPO_DIR, "workflow") not in sys.path:
    sys.path.insert(0, os.path.join(REPO_DIR, "workflow"))  # the fmrirecon package
DEFAULT_CONFIGFILE = os.path.join(REPO_DIR, "config", "config.yaml")


configfile: DEFAULT_CONFIGFILE


from fmrirecon.config import check_config_files, validate_config  # noqa: E402
from fmrirecon.errors import InputError  # noqa: E402
from fmrirecon.methods import rules_files  # noqa: E402

try:
    if DEFAULT_CONFIGFILE not in workflow.configfiles:
        # Used as a module with `config: ...`: Snakemake then skips configfile: and hands over
        # the user's config alone. Layer it over the default as --configfile does (mappings
        # merged key by key, lists replaced); the user's config is left as it was.
        check_config_files([DEFAULT_CONFIGFILE])
        _user_config = config
        config = load_configfile(DEFAULT_CONFIGFILE)
        update_config(config, copy.deepcopy(_user_config))
    check_config_files(workflow.configfiles)
    validate_config(config)
except InputError as exc:
    raise WorkflowError(str(exc)) from None


# The report's landing text: the summary of the reproduction cards once rule report_summary has
# written it (relative to the working directory), else the workflow's description.
_SUMMARY = Path("results/report/summary.rst").resolve()


report: str(_SUMMARY) if _SUMMARY.is_file() else "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


# one rules file per method family plugin (fmrirecon.methods.PLUGINS)
for family_rules in rules_files():

    include: family_rules


include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
    localrule: True
