# Paper 003, family plugin `latentreg`: captions -> text tokens (once per dataset), CAD's first
# stage (rule train_autoencoder, shared with paper 001 when the settings agree), our text-to-image
# LDM (once per dataset and settings {key}), the regressors fMRI -> z and fMRI -> c (per unit and
# branch settings) and img2img (per method).
# Captions -> text LDM -> img2img is a serial chain of about 8 CPU-minutes behind the first stage:
# its rules have priority 1, as CAD's, so it starts early; at priority 0 the default started it
# last, and its text LDM ran with the second core mostly idle.
from fmrirecon.methods.latentreg.dag import TABLE3, LatentregDag

LATENTREG = LatentregDag(
    recon_units(),
    METHODS,
    METHOD_SETTINGS,
    config["cad"],
    config["seed"],
    CAD.add_first_stage,
)

register_rules(
    "latentreg",
    loss_logs=LATENTREG.loss_logs,
    train_summaries=LATENTREG.train_summaries,
    targets=LATENTREG.targets,
)


# {encoder}: minilm (the substitute), or the key of a latentreg.pretrained_ldm folder (its own)
rule caption_tokens:
    input:
        images="results/{dataset}/images.h5",
        encoder=LATENTREG.text_encoder_input,
    output:
        text="results/{dataset}/models/latentreg-text-{encoder}.h5",
    log:
        "results/logs/caption_tokens/{dataset}_{encoder}.log",
    benchmark:
        "results/benchmarks/caption_tokens/{dataset}_{encoder}.tsv"
    wildcard_constraints:
        encoder="minilm|[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb(3000),
        runtime=get_runtime(30),
    params:
        truth=get_truth_file,
        pretrained=LATENTREG.text_encoder,
    script:
        "../scripts/caption_tokens.py"


rule train_text_ldm:
    input:
        images="results/{dataset}/images.h5",
        autoencoder=LATENTREG.autoencoder,
        text="results/{dataset}/models/latentreg-text-minilm.h5",
    output:
        model=directory("results/{dataset}/models/latentreg-ldm-{key}"),
        loss_log="results/{dataset}/models/latentreg-ldm-{key}.losses.tsv",
        train_summary="results/{dataset}/models/latentreg-ldm-{key}.train.json",
    log:
        "results/logs/train_text_ldm/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/train_text_ldm/{dataset}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(240),
    params:
        settings=LATENTREG.ldm_settings,
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/train_text_ldm.py"


# one job per regressor branch (z or c) of a unit, shared by the methods with the same branch
# settings ({key}); z's targets are the first stage's latents, c's the caption tokens
rule train_latent_regressor:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        first_stage=LATENTREG.first_stage_input,
        text=LATENTREG.branch_text,
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/latents/{branch}-{key}.safetensors",
        predictions="results/{dataset}/sub-{subject}/roi-{roi}/latents/{branch}-{key}-predictions.h5",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/latents/{branch}-{key}.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/latents/{branch}-{key}.train.json",
    log:
        "results/logs/train_latent_regressor/{dataset}/sub-{subject}_roi-{roi}_{branch}-{key}.log",
    benchmark:
        "results/benchmarks/train_latent_regressor/{dataset}/sub-{subject}_roi-{roi}_{branch}-{key}.tsv"
    wildcard_constraints:
        branch="[zc]",
        key="[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(120),
    params:
        first_stage=LATENTREG.first_stage_folder,
        settings=LATENTREG.branch_settings,
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/train_latent_regressor.py"


rule reconstruct_latentreg:
    input:
        unpack(LATENTREG.prediction_inputs),
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        ldm=LATENTREG.ldm,
        text=LATENTREG.text,
    output:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_latentreg/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_latentreg/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(LATENTREG.methods),
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(60),
    params:
        ldm_folder=LATENTREG.ldm_folder,
        settings=LATENTREG.method_settings("sampling"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/reconstruct_latentreg.py"


rule summarise_latentreg:
    input:
        LATENTREG.all_predictions(),
    output:
        report(
            TABLE3,
            caption="../report/latentreg_table3.rst",
            category="2. Metrics",
            subcategory="Latent prediction (paper 003)",
            labels={"table": "Table 3: latent MSE"},
        ),
    log:
        "results/logs/summarise_latentreg.log",
    benchmark:
        "results/benchmarks/summarise_latentreg.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        methods=LATENTREG.prediction_methods(),
        seed=config["seed"],
        n_boot=config["evaluation"]["bootstrap_samples"],
    script:
        "../scripts/summarise_latentreg.py"
