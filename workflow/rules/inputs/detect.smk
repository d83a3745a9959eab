# Input functions, parameters and targets of the detect and export_instructcv rules (workflow/rules/detect.smk).
# No rules here.

INSTRUCTCV_PARTS = {"train": "train", "val": "evaluation"}


wildcard_constraints:
    part="train|evaluation",
    source="[^/]+",


def detect_targets():
    """The detect job's index page, when detect.experiment, images and vocabulary are all set."""
    d = config["detect"]
    if not (d["experiment"] and d["images"] and d["vocabulary"]):
        return []
    return [f"results/detect/{d['experiment']}/index.html"]


def detect_inputs(wildcards):
    """Checkpoint, the folders holding the configured images (a path with a file suffix is an image file, one
    without a folder), the CLIP weights and a vocabulary file."""
    folders = sorted(
        {
            str(Path(p).parent) if Path(p).suffix else p
            for p in config["detect"]["images"]
        }
    )
    inputs = {
        "checkpoint": f"results/train/{wildcards.experiment}/final.pth",
        "images": folders,
        "weights": clip_weights_input(),
    }
    if isinstance(config["detect"]["vocabulary"], str):
        inputs["vocabulary"] = config["detect"]["vocabulary"]
    return inputs


def detect_vocabulary_arg(wildcards, input):
    """``--vocabulary=...`` (one argv word): the vocabulary file, or the configured names joined by commas."""
    vocabulary = config["detect"]["vocabulary"]
    if isinstance(vocabulary, str):
        return f"--vocabulary={input.vocabulary}"
    bad = [n for n in vocabulary if "," in n]
    if bad:
        raise ValueError(
            f"config key 'detect.vocabulary': names may not contain a comma: {bad} (use a vocabulary file)"
        )
    return "--vocabulary=" + ", ".join(vocabulary)


def export_instructcv_targets():
    part = INSTRUCTCV_PARTS[config["export_instructcv"]["split"]]
    return [
        f"results/export_instructcv/{source}/image_pairs_{part}"
        for source in config["export_instructcv"]["sources"]
    ]


def export_instructcv_inputs(wildcards):
    """gt: the split's file with every class; an experiment: its detections on the images predict ran on (val)."""
    split = {v: k for k, v in INSTRUCTCV_PARTS.items()}[wildcards.part]
    if wildcards.source == "gt":
        return {
            "annotations": all_classes_file(DATASET, split),
            "images": image_dir(DATASET, split),
        }
    if split != "val":
        raise ValueError(
            f"config key 'export_instructcv': source {wildcards.source!r} labels val pairs only (the detector "
            "predicts on val); set export_instructcv.split to val or use the source gt"
        )
    return {
        "annotations": predict_annotations(),
        "images": image_dir(DATASET, "val"),
        "detections": f"results/evaluate/{wildcards.source}/detections.json",
    }


def export_instructcv_detections_args(wildcards, input):
    return ["--detections", input.detections] if "detections" in input.keys() else []
