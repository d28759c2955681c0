# Evaluation of every reconstruction with each protocol preset, and the aggregated tables.


rule evaluate_reconstructions:
    input:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
        images="results/{dataset}/images.h5",
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/metrics-{protocol}.json",
    log:
        "results/logs/evaluate_reconstructions/{dataset}/sub-{subject}_roi-{roi}_{method}_{protocol}.log",
    benchmark:
        "results/benchmarks/evaluate_reconstructions/{dataset}/sub-{subject}_roi-{roi}_{method}_{protocol}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(30),
    params:
        protocol=get_protocol,
        seed=config["seed"],
        bootstrap_samples=config["evaluation"]["bootstrap_samples"],
        shuffled_control=config["evaluation"]["shuffled_control"],
        weights_dir=config["evaluation"]["weights_dir"],
    script:
        "../scripts/evaluate_reconstructions.py"


rule aggregate_metrics:
    input:
        metrics_targets(),
    output:
        table=report(
            "results/metrics.csv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"table": "all metrics"},
        ),
        comparisons=report(
            "results/method_comparisons.csv",
            caption="../report/comparisons.rst",
            category="Metrics",
            labels={"table": "paired tests"},
        ),
        unavailable=report(
            "results/unavailable_metrics.csv",
            caption="../report/unavailable.rst",
            category="Metrics",
            labels={"table": "unavailable metrics"},
        ),
    log:
        "results/logs/aggregate_metrics/aggregate_metrics.log",
    benchmark:
        "results/benchmarks/aggregate_metrics/aggregate_metrics.tsv"
    localrule: True
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/aggregate_metrics.py"
