# The image -> fMRI encoder shared by papers 002 and 000, and paper 000's F-attention decoder.
# One of each per dataset x subject x ROI; both are GPU rules (resources.gpu from training.gpus).


rule pretrain_encoder:
    input:
        data="results/{dataset}/sub-{subject}/roi-{roi}/data.h5",
        images="results/{dataset}/images.h5",
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/encoder/encoder.safetensors",
        hparams="results/{dataset}/sub-{subject}/roi-{roi}/encoder/encoder.json",
        losses="results/{dataset}/sub-{subject}/roi-{roi}/encoder/losses.tsv",
        accuracy="results/{dataset}/sub-{subject}/roi-{roi}/encoder/voxel_accuracy.tsv",
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
        training=TRAINING,
        seed=config["seed"],
        checkpoint=lambda wc: checkpoint_dir(
            "pretrain_encoder", wc.dataset, f"sub-{wc.subject}", f"roi-{wc.roi}"
        ),
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
        losses="results/{dataset}/sub-{subject}/roi-{roi}/attention/losses.tsv",
        summary="results/{dataset}/sub-{subject}/roi-{roi}/attention/summary.json",
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
        training=TRAINING,
        seed=config["seed"],
        checkpoint=lambda wc: checkpoint_dir(
            "train_attention_decoder", wc.dataset, f"sub-{wc.subject}", f"roi-{wc.roi}"
        ),
    script:
        "../scripts/train_attention_decoder.py"
