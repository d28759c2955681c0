# Paper 001 (CAD), family plugin `cad`: DC-MAE pretraining, cross-modal tuning, our label-to-image
# LDM, the fMRI-conditioned LDM and sampling. Stages shared between methods (the same slice of
# their settings) are named by a short key of that slice ({key}; fmrirecon.methods.cad.settings),
# so an ablation of phase 2 reuses phase 1, the image MAE, the first stage and the LDM.
# Every rule here has priority 1: first stage -> label LDM -> fMRI LDM -> sampling is the longest
# chain of the default DAG, so it starts first and the other jobs fill the second core.
from fmrirecon.methods.cad.dag import CadDag

CAD = CadDag(recon_units(), METHODS, METHOD_SETTINGS, config["seed"])

register_rules("cad", loss_logs=CAD.loss_logs, train_summaries=CAD.train_summaries)


rule pretrain_fmri_mae:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.safetensors",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.train.json",
    log:
        "results/logs/pretrain_fmri_mae/{dataset}/sub-{subject}_roi-{roi}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_fmri_mae/{dataset}/sub-{subject}_roi-{roi}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=CAD.shared_settings("fmri_mae"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/pretrain_fmri_mae.py"


# cad.fmri_mae.pool: phase 1 once on a pretraining pool (rule prepare_pool), in the pool's voxel
# space; tune_cross_modal and the later stages bridge each subject to it.
rule pretrain_fmri_mae_pool:
    input:
        pool="results/pools/{pool}/pool.h5",
    output:
        model="results/pools/{pool}/models/cad-fmri_mae-{key}.safetensors",
        loss_log="results/pools/{pool}/models/cad-fmri_mae-{key}.losses.tsv",
        train_summary="results/pools/{pool}/models/cad-fmri_mae-{key}.train.json",
    log:
        "results/logs/pretrain_fmri_mae_pool/{pool}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_fmri_mae_pool/{pool}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(8000),
        runtime=get_runtime(240),
    params:
        settings=CAD.shared_settings("fmri_mae"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/pretrain_fmri_mae_pool.py"


rule pretrain_image_mae:
    input:
        images="results/{dataset}/images.h5",
    output:
        model="results/{dataset}/models/cad-image_mae-{key}.safetensors",
        loss_log="results/{dataset}/models/cad-image_mae-{key}.losses.tsv",
        train_summary="results/{dataset}/models/cad-image_mae-{key}.train.json",
    log:
        "results/logs/pretrain_image_mae/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_image_mae/{dataset}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=CAD.shared_settings("image_mae"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/pretrain_image_mae.py"


rule tune_cross_modal:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        fmri_mae=CAD.fmri_mae,
        image_mae=CAD.image_mae,
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.safetensors",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.train.json",
    log:
        "results/logs/tune_cross_modal/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/tune_cross_modal/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD.methods),
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=CAD.method_settings("cross_modal"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/tune_cross_modal.py"


rule train_autoencoder:
    input:
        images="results/{dataset}/images.h5",
    output:
        model=directory("results/{dataset}/models/cad-autoencoder-{key}"),
        loss_log="results/{dataset}/models/cad-autoencoder-{key}.losses.tsv",
        train_summary="results/{dataset}/models/cad-autoencoder-{key}.train.json",
    log:
        "results/logs/train_autoencoder/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{dataset}_{key}.tsv"
    wildcard_constraints:
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
        settings=CAD.shared_settings("autoencoder"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/train_autoencoder.py"


rule pretrain_ldm:
    input:
        images="results/{dataset}/images.h5",
        autoencoder=CAD.autoencoder,
    output:
        model=directory("results/{dataset}/models/cad-ldm-{key}"),
        loss_log="results/{dataset}/models/cad-ldm-{key}.losses.tsv",
        train_summary="results/{dataset}/models/cad-ldm-{key}.train.json",
    log:
        "results/logs/pretrain_ldm/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_ldm/{dataset}_{key}.tsv"
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
        settings=CAD.shared_settings("ldm"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/pretrain_ldm.py"


rule train_ldm:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        fmri_encoder="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.safetensors",
        ldm=CAD.ldm_input,
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.safetensors",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.train.json",
    log:
        "results/logs/train_ldm/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/train_ldm/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD.methods),
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(240),
    params:
        ldm_folder=CAD.ldm_folder,
        settings=CAD.method_settings("fmri_ldm"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/train_ldm.py"


rule reconstruct_cad:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.safetensors",
        ldm=CAD.ldm_input,
    output:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_cad/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_cad/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD.methods),
    priority: 1
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(60),
    params:
        ldm_folder=CAD.ldm_folder,
        settings=CAD.method_settings("sampling"),
        precision=PRECISION,
        seed=config["seed"],
    script:
        "../scripts/reconstruct_cad.py"
