# Evaluation: one job per reconstruction scores every protocol its method asks for (sharing
# images, features and similarity matrices across protocols); the ground-truth features are one
# job per dataset; split_metrics writes the per-protocol JSON files in-process.


rule truth_features:
    input:
        images="results/{dataset}/images.h5",
    output:
        "results/{dataset}/truth_features.h5",
    log:
        "results/logs/truth_features/{dataset}.log",
    benchmark:
        "results/benchmarks/truth_features/{dataset}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(30),
    params:
        plan=TRUTH_FEATURE_PLAN,
        # simulated data: semantic metrics use the dataset's own classifier (a named substitution)
        dataset_classifier=is_simulated,
    script:
        "../scripts/truth_features.py"


rule evaluate_reconstructions:
    input:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
        images="results/{dataset}/images.h5",
        truth_features="results/{dataset}/truth_features.h5",
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/metrics.json",
    log:
        "results/logs/evaluate_reconstructions/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/evaluate_reconstructions/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(60),
    params:
        protocols=get_method_protocol_specs,
        seed=config["seed"],
        bootstrap_samples=config["evaluation"]["bootstrap_samples"],
        shuffled_control=config["evaluation"]["shuffled_control"],
        weights_dir=config["evaluation"]["weights_dir"],
    script:
        "../scripts/evaluate_reconstructions.py"


rule split_metrics:
    input:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/metrics.json",
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/metrics-{protocol}.json",
    log:
        "results/logs/split_metrics/{dataset}/sub-{subject}_roi-{roi}_{method}_{protocol}.log",
    benchmark:
        "results/benchmarks/split_metrics/{dataset}/sub-{subject}_roi-{roi}_{method}_{protocol}.tsv"
    localrule: True
    run:
        split_metrics(input[0], wildcards.protocol, output[0], log[0])


rule aggregate_metrics:
    input:
        metrics_targets(),
    output:
        table=report(
            "results/metrics.csv",
            caption="../report/metrics.rst",
            category="2. Metrics",
            labels={"table": "all metrics"},
        ),
        comparisons=report(
            "results/method_comparisons.csv",
            caption="../report/comparisons.rst",
            category="2. Metrics",
            labels={"table": "paired tests"},
        ),
        unavailable=report(
            "results/unavailable_metrics.csv",
            caption="../report/unavailable.rst",
            category="2. Metrics",
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
