# Helpers of the encoder/decoder methods (papers 002 and 000): inputs, loss logs, report groups.
ENCDEC_METHODS = methods_of("ssl", "loopencdec")


def uses_attention(method):
    settings = method_settings(config, method)
    return (
        METHODS[method]["family"] == "loopencdec"
        and settings["attention"]["lambda"] != 0
    )


def get_decoder_inputs(wildcards):
    unit = f"results/{wildcards.dataset}/sub-{wildcards.subject}/roi-{wildcards.roi}"
    inputs = {
        "data": f"{unit}/data.h5",
        "images": f"results/{wildcards.dataset}/images.h5",
        "encoder": f"{unit}/encoder/encoder.safetensors",
    }
    if uses_attention(wildcards.method):
        inputs["attention"] = f"{unit}/attention/attention_decoder.safetensors"
    return inputs


def encdec_loss_logs():
    """Loss logs of every encoder, attention decoder and decoder the targets need."""
    logs = []
    for d, s, r, m in recon_units():
        if m not in ENCDEC_METHODS:
            continue
        unit = f"results/{d}/sub-{s}/roi-{r}"
        logs += [f"{unit}/encoder/losses.tsv", f"{unit}/{m}/losses.tsv"]
        if uses_attention(m):
            logs.append(f"{unit}/attention/losses.tsv")
    return logs


TRAINING_LOGS.append(encdec_loss_logs)


def encdec_summary_inputs():
    """Encoder accuracies, attention-decoder and label-map summaries behind the trained methods."""
    acc, att, labels = set(), set(), set()
    for d, s, r, m in recon_units():
        if m not in ENCDEC_METHODS:
            continue
        unit = f"results/{d}/sub-{s}/roi-{r}"
        acc.add(f"{unit}/encoder/voxel_accuracy.tsv")
        if uses_attention(m):
            att.add(f"{unit}/attention/summary.json")
            labels.add(f"results/{d}/labels/summary.json")
    return {"accuracy": sorted(acc), "attention": sorted(att), "labels": sorted(labels)}


def encdec_groups():
    """Method groups for the ablation/ROI charts: family -> methods (the full method first)."""
    groups = {}
    for family in ("ssl", "loopencdec"):
        methods = methods_of(family)
        if methods:
            full = [m for m in methods if m == family] or methods[:1]
            groups[family] = full + [m for m in methods if m not in full]
    return groups


def encdec_targets():
    if not any(m in ENCDEC_METHODS for *_, m in recon_units()):
        return []
    return ["results/report/method_groups.png"]
