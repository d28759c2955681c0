# Papers 002 (ssl) and 000 (loopencdec), family plugin `encdec`: foreground-attention label maps,
# the image -> fMRI encoder both share, paper 000's attention decoder, the decoders and their
# reconstructions. Training rules are GPU rules (resources.gpu from training.gpus).
from fmrirecon.methods.encdec.dag import EncdecDag

ENCDEC = EncdecDag(recon_units(), METHODS, METHOD_SETTINGS)

register_rules(
    "encdec",
    loss_logs=ENCDEC.loss_logs,
    train_summaries=ENCDEC.train_summaries,
    report_inputs=ENCDEC.report_inputs,
    targets=ENCDEC.targets,
)


rule make_label_maps:
    input:
        images="results/{dataset}/images.h5",
    output:
        maps="results/{dataset}/labels/label_maps.h5",
        summary="results/{dataset}/labels/summary.json",
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


rule plot_label_maps:
    input:
        images="results/{dataset}/images.h5",
        maps="results/{dataset}/labels/label_maps.h5",
        summary="results/{dataset}/labels/summary.json",
    output:
        figure=report(
            "results/report/label_maps/{dataset}.png",
            caption="../report/label_maps.rst",
            category="5. F-attention",
            labels={"dataset": "{dataset}", "figure": "label maps"},
        ),
    log:
        "results/logs/plot_label_maps/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_label_maps/{dataset}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    script:
        "../scripts/plot_label_maps.py"


rule pretrain_encoder:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/encoder/encoder.safetensors",
        hparams="results/{dataset}/sub-{subject}/roi-{roi}/encoder/encoder.json",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/encoder/losses.tsv",
        accuracy="results/{dataset}/sub-{subject}/roi-{roi}/encoder/voxel_accuracy.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/encoder/encoder.train.json",
    log:
        "results/logs/pretrain_encoder/{dataset}/sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/pretrain_encoder/{dataset}/sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(6000),
        runtime=get_runtime(120),
    params:
        settings=config["encoder"],
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/pretrain_encoder.py"


rule train_attention_decoder:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
        maps="results/{dataset}/labels/label_maps.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/attention/attention_decoder.safetensors",
        hparams="results/{dataset}/sub-{subject}/roi-{roi}/attention/attention_decoder.json",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/attention/losses.tsv",
        summary="results/{dataset}/sub-{subject}/roi-{roi}/attention/summary.json",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/attention/attention_decoder.train.json",
    log:
        "results/logs/train_attention_decoder/{dataset}/sub-{subject}_roi-{roi}.log",
    benchmark:
        "results/benchmarks/train_attention_decoder/{dataset}/sub-{subject}_roi-{roi}.tsv"
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(60),
    params:
        settings=config["attention_decoder"],
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/train_attention_decoder.py"


rule train_decoder:
    input:
        unpack(ENCDEC.decoder_inputs),
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.safetensors",
        hparams="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.json",
        loss_log="results/{dataset}/sub-{subject}/roi-{roi}/{method}/losses.tsv",
        train_summary="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.train.json",
    log:
        "results/logs/train_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/train_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(ENCDEC.methods),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(8000),
        runtime=get_runtime(240),
    params:
        family=get_family_name,
        settings=get_method_settings,
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/train_decoder.py"


rule reconstruct_decoder:
    input:
        unpack(ENCDEC.decoder_inputs),
        decoder="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.safetensors",
    output:
        recon="results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/reconstruct_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(ENCDEC.methods),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        seed=config["seed"],
        precision=PRECISION,
    script:
        "../scripts/reconstruct_decoder.py"
