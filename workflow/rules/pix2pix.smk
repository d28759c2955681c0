# Paper 004, family plugin `pix2pix`: the multi-label category classifier (once per dataset x
# subject x ROI of a pix2pix method, category_classifier.enabled) and the pix2pix decoder.
from fmrirecon.methods.pix2pix.dag import CLASSIFIER_SUMMARY, Pix2pixDag

PIX2PIX = Pix2pixDag(
    recon_units(),
    METHODS,
    config["category_classifier"],
    {name: raw_root(name) for name in SIMULATED},
)

register_rules(
    "pix2pix",
    loss_logs=PIX2PIX.loss_logs,
    train_summaries=PIX2PIX.train_summaries,
    targets=PIX2PIX.targets,
)


rule train_category_classifier:
    input:
        unpack(PIX2PIX.classifier_inputs),
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/classifier/classifier.safetensors",
        metrics="results/{dataset}/sub-{subject}/roi-{roi}/classifier/metrics.json",
        scores="results/{dataset}/sub-{subject}/roi-{roi}/classifier/test_scores.h5",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/classifier/classifier.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/classifier/classifier.train.json",
    log:
        "results/logs/train_category_classifier/{dataset}/sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/train_category_classifier/{dataset}/sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=config["category_classifier"],
        truth=get_truth_file,
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/train_category_classifier.py"


rule plot_category_classifier:
    input:
        metrics="results/{dataset}/sub-{subject}/roi-{roi}/classifier/metrics.json",
        scores="results/{dataset}/sub-{subject}/roi-{roi}/classifier/test_scores.h5",
    output:
        report(
            "results/report/classifier/{dataset}_sub-{subject}_roi-{roi}.png",
            caption="../report/category_classifier.rst",
            category="2. Metrics",
            subcategory="Category classifier (paper 004)",
            labels={
                "dataset": "{dataset}",
                "subject": "{subject}",
                "roi": "{roi}",
                "figure": "classifier",
            },
        ),
    log:
        "results/logs/plot_category_classifier/{dataset}_sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/plot_category_classifier/{dataset}_sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_category_classifier.py"


rule summarise_category_classifier:
    input:
        PIX2PIX.classifier_metrics(),
    output:
        report(
            CLASSIFIER_SUMMARY,
            caption="../report/category_classifier.rst",
            category="2. Metrics",
            subcategory="Category classifier (paper 004)",
            labels={"table": "classifier summary"},
        ),
    log:
        "results/logs/summarise_category_classifier.log",
    benchmark:
        "results/benchmarks/summarise_category_classifier.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/summarise_category_classifier.py"


rule train_pix2pix:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/pix2pix.safetensors",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/{method}/pix2pix.losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/{method}/pix2pix.train.json",
    log:
        "results/logs/train_pix2pix/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/train_pix2pix/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(PIX2PIX.methods),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(120),
    params:
        settings=get_method_settings,
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/train_pix2pix.py"


rule reconstruct_pix2pix:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/pix2pix.safetensors",
    output:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_pix2pix/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_pix2pix/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(PIX2PIX.methods),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 1
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/reconstruct_pix2pix.py"
