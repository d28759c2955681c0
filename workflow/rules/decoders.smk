# Decoders of papers 002 (family ssl) and 000 (family loopencdec): one training loop, the losses
# set by the method's settings; then the test reconstructions for the evaluation.
rule train_decoder:
    input:
        unpack(get_decoder_inputs),
    output:
        model="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.safetensors",
        hparams="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.json",
        losses="results/{dataset}/sub-{subject}/roi-{roi}/{method}/losses.tsv",
    log:
        "results/logs/train_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    benchmark:
        "results/benchmarks/train_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.tsv"
    wildcard_constraints:
        method=_alternatives(ENCDEC_METHODS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(8000),
        runtime=get_runtime(240),
    params:
        family=lambda wc: METHODS[wc.method]["family"],
        settings=get_method_settings,
        training=TRAINING,
        seed=config["seed"],
        checkpoint=lambda wc: checkpoint_dir(
            "train_decoder",
            wc.dataset,
            f"sub-{wc.subject}",
            f"roi-{wc.roi}",
            wc.method,
        ),
    script:
        "../scripts/train_decoder.py"


rule reconstruct_decoder:
    input:
        unpack(get_decoder_inputs),
        decoder="results/{dataset}/sub-{subject}/roi-{roi}/{method}/decoder.safetensors",
    output:
        "results/{dataset}/sub-{subject}/roi-{roi}/{method}/recon.h5",
    log:
        "results/logs/reconstruct_decoder/{dataset}/sub-{subject}_roi-{roi}_{method}.log",
    wildcard_constraints:
        method=_alternatives(ENCDEC_METHODS),
    conda:
        "../../envs/fmrirecon.yaml"
    threads: 2
    resources:
        gpu=gpu_resource(),
        mem_mb=get_mem_mb(4000),
        runtime=get_runtime(20),
    params:
        family=lambda wc: METHODS[wc.method]["family"],
        training=TRAINING,
        seed=config["seed"],
    script:
        "../scripts/reconstruct_decoder.py"
