# Input functions, parameters and targets of the detect and export_instructcv rules (workflow/rules/detect.smk).
# No rules here.

INSTRUCTCV_PARTS = {"train": "train", "val": "evaluation"}


wildcard_constraints:
    part="train|evaluation",
    source="[^/]+",


def detect_targets():
    """The detect job's index page, when images, vocabulary and detect.experiment or detect.checkpoint are set."""
    d = config["detect"]
    if not ((d["experiment"] or d["checkpoint"]) and d["images"] and d["vocabulary"]):
        return []
    return [f"results/detect/{detect_name()}/index.html"]  # detect.checkpoint exists (workflow/config_names.py)


def detect_name():
    """The folder of detect's outputs: detect.experiment, else the folder name of detect.checkpoint."""
    d = config["detect"]
    return d["experiment"] or Path(d["checkpoint"]).resolve().parent.name


def detect_checkpoint(wildcards):
    """detect.checkpoint as an absolute path: a file that Snakemake reads as it is and that no rule makes, so no
    training is planned for it (not even for this folder's results/train/E/final.pth); else the experiment's
    final.pth, which Snakemake trains when it is missing or out of date."""
    given = config["detect"]["checkpoint"]
    if given:
        return str(Path(given).resolve())
    return f"results/train/{wildcards.experiment}/final.pth"


def detect_inputs(wildcards):
    """Checkpoint, the folders holding the configured images (a path with a file suffix is an image file, one
    without a folder), the CLIP weights (of an experiment trained here; a given checkpoint's CLIP is the one it
    records) and a vocabulary file."""
    folders = sorted(
        {
            str(Path(p).parent) if Path(p).suffix else p
            for p in config["detect"]["images"]
        }
    )
    inputs = {"checkpoint": detect_checkpoint(wildcards), "images": folders}
    if not config["detect"]["checkpoint"]:
        inputs["weights"] = clip_weights_input()
    if isinstance(config["detect"]["vocabulary"], str):
        inputs["vocabulary"] = config["detect"]["vocabulary"]
    return inputs


def detect_clip_args(wildcards, input):
    """``--clip-model``, ``--clip-weights`` of an experiment trained here; none for detect.checkpoint (the stage
    reads the CLIP the checkpoint records)."""
    if config["detect"]["checkpoint"]:
        return []
    return [
        f"--clip-model={config['clip']['model']}",
        f"--clip-weights={clip_weights_arg(wildcards, input)}",
    ]


def detect_vocabulary_arg(wildcards, input):
    """``--vocabulary=...`` (one argv word): the vocabulary file, or the configured names joined by commas."""
    vocabulary = config["detect"]["vocabulary"]
    if isinstance(vocabulary, str):
        return f"--vocabulary-file={input.vocabulary}"
    return "--vocabulary=" + ", ".join(vocabulary)  # no name holds a comma (workflow/config_names.py)


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
