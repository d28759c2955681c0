# Paper 001 (CAD): DC-MAE pretraining, cross-modal tuning, our label-to-image LDM, the fMRI-
# conditioned LDM and sampling. Stages shared between methods (same settings) live under a short
# settings hash ({key}), so an ablation of phase 2 reuses phase 1, the image MAE and the LDM.


include: "ldm_common.smk"


rule pretrain_fmri_mae:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.safetensors",
        losses="results/{dataset}/sub-{subject}/roi-{roi}/models/cad-fmri_mae-{key}.losses.tsv",
    log:
        "results/logs/pretrain_fmri_mae/{dataset}/sub-{subject}_roi-{roi}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_fmri_mae/{dataset}/sub-{subject}_roi-{roi}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=get_cad_stage_settings("fmri_mae"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("pretrain_fmri_mae"),
    script:
        "../scripts/cad_pretrain_fmri_mae.py"


rule pretrain_image_mae:
    input:
        images="results/{dataset}/images.h5",
    output:
        model="results/{dataset}/models/cad-image_mae-{key}.safetensors",
        losses="results/{dataset}/models/cad-image_mae-{key}.losses.tsv",
    log:
        "results/logs/pretrain_image_mae/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_image_mae/{dataset}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=get_cad_stage_settings("image_mae"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("pretrain_image_mae"),
    script:
        "../scripts/cad_pretrain_image_mae.py"


rule tune_cross_modal:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        fmri_mae=cad_fmri_mae,
        image_mae=cad_image_mae,
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.safetensors",
        losses="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.losses.tsv",
    log:
        "results/logs/tune_cross_modal/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/tune_cross_modal/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD_METHODS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=get_cad_method_settings("cross_modal"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("tune_cross_modal"),
    script:
        "../scripts/cad_tune_cross_modal.py"


rule train_autoencoder:
    input:
        images="results/{dataset}/images.h5",
    output:
        model=directory("results/{dataset}/models/cad-autoencoder-{key}"),
        losses="results/{dataset}/models/cad-autoencoder-{key}.losses.tsv",
    log:
        "results/logs/train_autoencoder/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{dataset}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(120),
    params:
        settings=get_cad_stage_settings("autoencoder"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("train_autoencoder"),
    script:
        "../scripts/cad_train_autoencoder.py"


rule pretrain_ldm:
    input:
        images="results/{dataset}/images.h5",
        autoencoder=get_cad_autoencoder,
    output:
        model=directory("results/{dataset}/models/cad-ldm-{key}"),
        losses="results/{dataset}/models/cad-ldm-{key}.losses.tsv",
    log:
        "results/logs/pretrain_ldm/{dataset}_{key}.log",
    benchmark:
        "results/benchmarks/pretrain_ldm/{dataset}_{key}.tsv"
    wildcard_constraints:
        key="[0-9a-f]{12}",
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(240),
    params:
        settings=get_cad_stage_settings("ldm"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("pretrain_ldm"),
    script:
        "../scripts/cad_pretrain_ldm.py"


rule train_ldm:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        fmri_encoder="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-cross_modal.safetensors",
        ldm=get_cad_ldm_input,
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.safetensors",
        losses="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.losses.tsv",
    log:
        "results/logs/train_ldm/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/train_ldm/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD_METHODS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(240),
    params:
        ldm_folder=cad_ldm_folder,
        settings=get_cad_method_settings("fmri_ldm"),
        training=TRAINING,
        seed=config["seed"],
        checkpoint_dir=get_cad_checkpoint("train_ldm"),
    script:
        "../scripts/cad_train_ldm.py"


rule reconstruct_cad:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/cad-ldm.safetensors",
        ldm=get_cad_ldm_input,
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_cad/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_cad/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(CAD_METHODS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(60),
    params:
        ldm_folder=cad_ldm_folder,
        settings=get_cad_method_settings("sampling"),
        training=TRAINING,
        seed=config["seed"],
    script:
        "../scripts/cad_reconstruct.py"
