# Foreground-attention label maps (paper 000): one file per dataset, for the training and test images.


rule make_label_maps:
    input:
        images="results/{dataset}/images.h5",
    output:
        maps="results/{dataset}/labels/label_maps.h5",
        summary="results/{dataset}/labels/summary.json",
        figure=report(
            "results/report/label_maps/{dataset}.png",
            caption="../report/label_maps.rst",
            category="F-attention",
            labels={"dataset": "{dataset}", "figure": "label maps"},
        ),
    log:
        "results/logs/make_label_maps/{dataset}.log",
    benchmark:
        "results/benchmarks/make_label_maps/{dataset}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(30),
    params:
        settings=config["label_maps"],
    script:
        "../scripts/make_label_maps.py"
