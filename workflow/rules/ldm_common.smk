# Helpers of the CAD rules (ldm.smk): per-method settings, shared-stage hashes, input functions.

CAD_METHODS = methods_of("cad")
CAD_SETTINGS = {m: method_settings(config, m) for m in CAD_METHODS}


def cad_keys(method):
    """Settings hash of each shared stage of ``method`` (over what the stage reads)."""
    s, seed = CAD_SETTINGS[method], config["seed"]
    keys = {
        stage: config_hash(stage, cad_stage_settings(s, stage), seed)[:12]
        for stage in ("fmri_mae", "image_mae", "autoencoder")
    }
    keys["ldm"] = config_hash(
        "ldm", keys["autoencoder"], cad_stage_settings(s, "ldm"), seed
    )[:12]
    return keys


CAD_STAGES = {stage: {} for stage in ("fmri_mae", "image_mae", "autoencoder", "ldm")}
for _m in CAD_METHODS:
    for _stage, _key in cad_keys(_m).items():
        CAD_STAGES[_stage].setdefault(
            _key, cad_stage_settings(CAD_SETTINGS[_m], _stage)
        )


def get_cad_stage_settings(stage):
    def settings(wildcards):
        return CAD_STAGES[stage][wildcards.key]

    return settings


def get_cad_method_settings(stage):
    def settings(wildcards):
        return cad_stage_settings(CAD_SETTINGS[wildcards.method], stage)

    return settings


def get_cad_checkpoint(rule_name):
    def folder(wildcards):
        return checkpoint_dir(
            rule_name, *[f"{k}-{v}" for k, v in sorted(wildcards.items())]
        )

    return folder


def cad_fmri_mae(wildcards):
    key = cad_keys(wildcards.method)["fmri_mae"]
    return f"results/{wildcards.dataset}/sub-{wildcards.subject}/roi-{wildcards.roi}/models/cad-fmri_mae-{key}.safetensors"


def cad_image_mae(wildcards):
    return f"results/{wildcards.dataset}/models/cad-image_mae-{cad_keys(wildcards.method)['image_mae']}.safetensors"


def cad_ldm_folder(wildcards):
    """The LDM that train_ldm starts from: the configured local folder, else our own."""
    s = CAD_SETTINGS[wildcards.method]
    if s["pretrained_ldm"]:
        return s["pretrained_ldm"]
    return f"results/{wildcards.dataset}/models/cad-ldm-{cad_keys(wildcards.method)['ldm']}"


def get_cad_ldm_input(wildcards):
    """A missing configured folder is not an input (the job then fails with a clear message)."""
    folder = cad_ldm_folder(wildcards)
    return [folder] if folder.startswith("results/") or os.path.isdir(folder) else []


def get_cad_autoencoder(wildcards):
    return f"results/{wildcards.dataset}/models/cad-autoencoder-{cad_keys_of_ldm(wildcards.key)}"


def cad_keys_of_ldm(ldm_key):
    return next(
        cad_keys(m)["autoencoder"] for m in CAD_METHODS if cad_keys(m)["ldm"] == ldm_key
    )


def cad_loss_logs():
    """Every per-epoch loss log of the CAD stages in the DAG (for the report)."""
    logs = set()
    for d, s, r, m in recon_units():
        if m not in CAD_METHODS:
            continue
        k = cad_keys(m)
        unit = f"results/{d}/sub-{s}/roi-{r}"
        logs |= {
            f"{unit}/models/cad-fmri_mae-{k['fmri_mae']}.losses.tsv",
            f"results/{d}/models/cad-image_mae-{k['image_mae']}.losses.tsv",
            f"{unit}/{m}/cad-cross_modal.losses.tsv",
            f"{unit}/{m}/cad-ldm.losses.tsv",
        }
        if not CAD_SETTINGS[m]["pretrained_ldm"]:
            logs |= {
                f"results/{d}/models/cad-autoencoder-{k['autoencoder']}.losses.tsv",
                f"results/{d}/models/cad-ldm-{k['ldm']}.losses.tsv",
            }
    return sorted(logs)


TRAINING_LOGS.append(cad_loss_logs)
