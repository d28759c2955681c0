# The reference decoder and the control reconstructions (family plugin `baselines`).


rule reconstruct_baseline:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
    output:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_baseline/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_baseline/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(methods_of("baselines")),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        settings=get_method_settings,
        seed=config["seed"],
        truth=get_truth_file,
    script:
        "../scripts/reconstruct_baseline.py"


register_rules("baselines", loss_logs=lambda: [], train_summaries=lambda: [])
