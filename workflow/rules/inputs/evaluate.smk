# Input functions and parameters of the evaluate rules (workflow/rules/evaluate.smk). No rules here.

import json


def detection_targets():
    return expand(
        "results/evaluate/{experiment}/metrics.json",
        experiment=experiment_runs(),
    )


def evaluate_inputs(wildcards):
    """Ground truth of the evaluation: the COCO-style file (demo, coco, custom) and/or the LVIS-style file (demo,
    lvis)."""
    inputs = {}
    if DATASET in ("demo", "coco", "custom"):
        inputs["coco"] = predict_annotations()
    if DATASET == "demo":
        inputs["lvis"] = "results/annotations/demo/lvis_val.all.json"
    elif DATASET == "lvis":
        inputs["lvis"] = all_classes_file(DATASET, "val")
    return inputs


def evaluate_args(wildcards, input):
    args = []
    if "coco" in input.keys():
        args += ["--coco", input.coco, "--num-base", str(num_base())]
    if "lvis" in input.keys():
        args += ["--lvis", input.lvis]
    return args


def report_targets():
    return ["results/report/summary.md"]


def report_variants():
    """The config's variants as one JSON word: the report's ablation tables (which runs vary which experiment, and
    what each changes)."""
    return json.dumps(config["variants"], sort_keys=True)
