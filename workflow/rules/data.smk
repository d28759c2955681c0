# Data stages: simulate (embedded default) or read the real dataset, images once, ROI masking.


rule simulate_dataset:
    output:
        directory("results/{dataset}/raw"),
    log:
        "results/logs/simulate_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/simulate_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives(SIMULATED),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        simulation=get_simulation_settings,
        seed=config["seed"],
        subjects=get_dataset_setting("subjects"),
    script:
        "../scripts/simulate_dataset.py"


rule prepare_images:
    input:
        get_image_inputs,
    output:
        "results/{dataset}/images.h5",
    log:
        "results/logs/prepare_images/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_images/{dataset}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(30),
    params:
        source=get_image_source,
        image_size=config["image_size"],
        config_hash=get_data_hash,
    script:
        "../scripts/prepare_images.py"


rule mask_roi:
    input:
        unpack(get_mask_inputs),
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
    log:
        "results/logs/mask_roi/{dataset}/sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/mask_roi/{dataset}/sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        source=get_subject_source,
        composites=config["rois"],
        normalization=get_dataset_setting("normalization"),
        roi_source=get_dataset_setting("roi_source"),
        config_hash=get_data_hash,
    script:
        "../scripts/mask_roi.py"


# An unlabeled pretraining pool (config `pools:`), built only when a method pretrains on it.
rule simulate_pool:
    output:
        directory("results/pools/{pool}/raw"),
    log:
        "results/logs/simulate_pool/{pool}.log",
    benchmark:
        "results/benchmarks/simulate_pool/{pool}.tsv"
    wildcard_constraints:
        pool=_alternatives(SIMULATED_POOLS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb(2000),
        runtime=get_runtime(20),
    params:
        pool=get_pool_simulation,
        seed=config["seed"],
    script:
        "../scripts/simulate_pool.py"


rule prepare_pool:
    input:
        get_pool_inputs,
    output:
        "results/pools/{pool}/pool.h5",
    log:
        "results/logs/prepare_pool/{pool}.log",
    benchmark:
        "results/benchmarks/prepare_pool/{pool}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb(16000),
        runtime=get_runtime(60),
    params:
        source=get_pool_source,
        config_hash=get_pool_hash,
    script:
        "../scripts/prepare_pool.py"
