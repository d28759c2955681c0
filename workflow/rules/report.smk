# Figures for the HTML report (snakemake --report results/report.html).


rule plot_reconstructions:
    input:
        unpack(get_grid_inputs),
    output:
        report(
            "results/report/grids/{dataset}_sub-{subject}_roi-{roi}.png",
            caption="../report/grid.rst",
            category="Reconstructions",
            subcategory="{dataset}",
            labels={"subject": "{subject}", "ROI": "{roi}"},
        ),
    log:
        "results/logs/plot_reconstructions/{dataset}_sub-{subject}_roi-{roi}.log",
    conda:
        "../../envs/fmrirecon.yaml"
    params:
        n_images=config["evaluation"]["grid_images"],
    script:
        "../scripts/plot_reconstructions.py"


rule plot_metrics:
    input:
        "results/metrics.csv",
    output:
        report(
            "results/report/metrics.png",
            caption="../report/metrics_chart.rst",
            category="Metrics",
            labels={"figure": "bar charts"},
        ),
    log:
        "results/logs/plot_metrics/plot_metrics.log",
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_metrics.py"
