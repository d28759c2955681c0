# Figures for the HTML report (snakemake --report results/report.html).


# Reproduction cards: each paper's published results beside ours, its claims tested. Listed first;
# the report's menu sorts categories by name, so "Reproduction cards" follows "Reconstructions".
rule reproduction_cards:
    input:
        unpack(get_reproduction_card_inputs),
    output:
        report(
            "results/report/cards/{paper}.csv",
            caption="../report/reproduction_card.rst",
            category="1. Reproduction cards",
            labels={"paper": "{paper}", "table": "reproduction card"},
        ),
    log:
        "results/logs/reproduction_cards/{paper}.log",
    benchmark:
        "results/benchmarks/reproduction_cards/{paper}.tsv"
    wildcard_constraints:
        paper=_alternatives(PUBLISHED_PAPERS),
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        datasets=get_card_datasets(),
        method_settings=get_card_method_settings(),
        image_size=config["image_size"],
    script:
        "../scripts/reproduction_cards.py"


# The report's first page (the Snakefile's `report:` uses summary.rst once it exists) and the
# metadata that makes Snakemake open the report on it: --report-metadata results/report/metadata.yaml
rule report_summary:
    input:
        cards=reproduction_card_targets(),
    output:
        rst="results/report/summary.rst",
        metadata="results/report/metadata.yaml",
    log:
        "results/logs/report_summary/report_summary.log",
    benchmark:
        "results/benchmarks/report_summary/report_summary.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/report_summary.py"


rule plot_reconstructions:
    input:
        unpack(get_grid_inputs),
    output:
        report(
            "results/report/grids/{dataset}_sub-{subject}_roi-{roi}.png",
            caption="../report/grid.rst",
            category="3. Reconstructions",
            subcategory="{dataset}",
            labels={"subject": "{subject}", "ROI": "{roi}"},
        ),
    log:
        "results/logs/plot_reconstructions/{dataset}_sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/plot_reconstructions/{dataset}_sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        n_images=config["evaluation"]["grid_images"],
    script:
        "../scripts/plot_reconstructions.py"


rule data_card:
    input:
        unpack(get_data_card_inputs),
    output:
        report(
            "results/report/data_cards/{dataset}.csv",
            caption="../report/data_card.rst",
            category="6. Data",
            labels={"dataset": "{dataset}", "table": "data card"},
        ),
    log:
        "results/logs/data_card/{dataset}.log",
    benchmark:
        "results/benchmarks/data_card/{dataset}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        format=get_data_card_format,
    script:
        "../scripts/data_card.py"


rule plot_metrics:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/report/metrics/{protocol}.png",
            caption="../report/metrics_chart.rst",
            category="2. Metrics",
            labels={"protocol": "{protocol}", "figure": "metrics per method"},
        ),
    log:
        "results/logs/plot_metrics/{protocol}.log",
    benchmark:
        "results/benchmarks/plot_metrics/{protocol}.tsv"
    wildcard_constraints:
        protocol=_alternatives(PROTOCOLS),
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_metrics.py"


rule plot_training_curves:
    input:
        get_family_loss_logs,
    output:
        report(
            "results/report/training/{family}.png",
            caption="../report/training_curves.rst",
            category="4. Training",
            labels={"family": "{family}", "figure": "loss curves"},
        ),
    log:
        "results/logs/plot_training_curves/{family}.log",
    benchmark:
        "results/benchmarks/plot_training_curves/{family}.tsv"
    wildcard_constraints:
        family=_alternatives(PLUGINS),
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_training_curves.py"


rule plot_training:
    input:
        unpack(get_training_report_inputs),
    output:
        summary=report(
            "results/training_summary.csv",
            caption="../report/training_summary.rst",
            category="4. Training",
            labels={"table": "training stages"},
        ),
    log:
        "results/logs/plot_training/plot_training.log",
    benchmark:
        "results/benchmarks/plot_training/plot_training.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_training.py"


rule plot_method_groups:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/report/method_groups.png",
            caption="../report/method_groups.rst",
            category="2. Metrics",
            labels={"figure": "ablations and ROIs"},
        ),
    log:
        "results/logs/plot_method_groups/plot_method_groups.log",
    benchmark:
        "results/benchmarks/plot_method_groups/plot_method_groups.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        groups=ablation_groups(),
        rois={
            f: list(dict.fromkeys(r for *_, r, m in recon_units() if m == f))
            for f in ablation_groups()
        },
    script:
        "../scripts/plot_method_groups.py"
