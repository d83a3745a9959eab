# Input functions and parameters of the evaluate rules (workflow/rules/evaluate.smk). No rules here.

import snakemake.io as smk_io  # a bare report( at a line start would open the report: directive


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


def report_gallery():
    """The val gallery pictures of the report rule, one per run, each a report item labelled by its run."""
    caption, category = "../report/val_gallery.rst", "Val gallery"
    runs = experiment_runs()
    return [
        smk_io.report(
            f"results/report/val_gallery_{r}.png",
            caption=caption,
            category=category,
            labels={"run": r},
        )
        for r in runs
    ]
