# Path helpers and target lists. No rules here.

import os
import sys
from pathlib import Path


envvars:
    "PATH",


# Rules call `python -m pipeline.<stage>`: without --sdm conda, that is the interpreter running Snakemake
# (e.g. .venv/bin/snakemake works without activating the venv); a conda env's bin dir comes first when used.
os.environ["PATH"] = (
    os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
)

DATASET = config["dataset"]

# `clip.weights: teacher` = the demo's CLIP teacher, trained by rule teacher (workflow/rules/teacher.smk) and then
# read by every CLIP consumer exactly like a real checkpoint; `random` = no weights file.
TEACHER_CHECKPOINT = "results/teacher/clip.pt"
CLIP_WEIGHTS = (
    TEACHER_CHECKPOINT
    if config["clip"]["weights"] == "teacher"
    else config["clip"]["weights"]
)


def dry_run_flag(flag="--dry-run"):
    """An optional argv word of a ``{params.dry:q}`` field: ``[flag]`` with ``dry_run``, else no word."""
    return [flag] if config["dry_run"] else []


def repeated(flag, values):
    """``flag=VALUE`` per value (the stage's list option accumulates them): a name that starts with ``-`` stays
    the option's value and cannot start an option of its own."""
    return [f"{flag}={v}" for v in values]


def oake_shard_files(kind, folder, dataset=DATASET):
    """The OAKE shards of one kind and image folder, oake.shards of them, in order."""
    return expand(
        "results/oake/{dataset}/{kind}/{folder}/shard-{shard}.h5",
        dataset=dataset,
        kind=kind,
        folder=folder,
        shard=[f"{i:03d}" for i in range(config["oake"]["shards"])],
    )


def teacher_targets():
    """The teacher's report, when the CLIP weights are the teacher's."""
    if CLIP_WEIGHTS == TEACHER_CHECKPOINT:
        return ["results/teacher/zeroshot.json"]
    return []


DATA_ROOT = config["data_root"]
SPLITS = ["train", "val"]


wildcard_constraints:
    split="train|val",
    folder="train|val|train2017|val2017",
    kind="globals|blocks|objects",
    shard="[0-9]{3}",
    dataset="demo|coco|lvis|custom",


def coco_source(wildcards):
    """Original COCO annotation file of one split (reference layout under data_root)."""
    return f"{DATA_ROOT}/coco/annotations/instances_{wildcards.split}2017.json"


def lvis_source(wildcards):
    """Original LVIS v1 annotation file of one split (LVIS images are the COCO 2017 images)."""
    return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_{wildcards.split}.json"


def custom_source(split):
    """The user's annotation file of one split (dataset custom)."""
    return config["custom"][f"{split}_annotations"]


def lvis_train_source(wildcards):
    """Original LVIS v1 training file (for the Detic/MM-OVOD extras)."""
    return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_train.json"


def annotation_targets():
    """Every annotation file of the configured dataset (ARCHITECTURE.md section 2)."""
    if DATASET == "coco":
        return expand(
            "results/annotations/coco/instances_{split}2017.{k}.json",
            split=SPLITS,
            k=[48, 65],
        ) + ["results/annotations/coco/instances_val2017.65.min.json"]
    if DATASET == "lvis":
        return expand(
            "results/annotations/lvis/lvis_v1_{split}.{k}.json",
            split=SPLITS,
            k=[866, 1203],
        ) + [
            "results/annotations/lvis/lvis_v1_train.norare.json",
            "results/annotations/lvis/lvis_v1_train_cat_info.json",
        ]
    if DATASET == "custom":
        return expand(
            "results/annotations/custom/{split}.{view}.json",
            split=SPLITS,
            view=["base", "all"],
        ) + ["results/annotations/custom/val.all.min.json"]
    return expand(
        "results/annotations/demo/{prefix}{split}.{view}.json",
        prefix=["", "lvis_"],
        split=SPLITS,
        view=["base", "all"],
    ) + [
        "results/annotations/demo/val.all.min.json",
        "results/annotations/demo/lvis_train.norare.json",
        "results/annotations/demo/lvis_train_cat_info.json",
    ]


def all_classes_file(dataset, split):
    """The remapped annotation file with every class of ``dataset`` (base and novel)."""
    return {
        "demo": f"results/annotations/demo/{split}.all.json",
        "custom": f"results/annotations/custom/{split}.all.json",
        "coco": f"results/annotations/coco/instances_{split}2017.65.json",
        "lvis": f"results/annotations/lvis/lvis_v1_{split}.1203.json",
    }[dataset]


def image_dir(dataset, split):
    """Image folder of a split (LVIS images are the COCO 2017 images)."""
    if dataset == "demo":
        return f"results/demo_data/images/{split}"
    if dataset == "custom":
        return config["custom"][f"{split}_images"]
    return f"{DATA_ROOT}/coco/{split}2017"


def clip_weights_input():
    """The CLIP weights as an input file (a changed file reruns its consumers); none when random."""
    return [] if CLIP_WEIGHTS == "random" else [CLIP_WEIGHTS]


def clip_weights_arg(wildcards, input):
    """``--weights`` of a CLIP rule: its weights input, or ``random``."""
    return "random" if CLIP_WEIGHTS == "random" else input.weights


OAKE_FOLDERS = (
    ["train", "val"] if DATASET in ("demo", "custom") else ["train2017", "val2017"]
)


def base_file(dataset, split):
    """The remapped annotation file with base annotations only."""
    return {
        "demo": f"results/annotations/demo/{split}.base.json",
        "custom": f"results/annotations/custom/{split}.base.json",
        "coco": f"results/annotations/coco/instances_{split}2017.48.json",
        "lvis": f"results/annotations/lvis/lvis_v1_{split}.866.json",
    }[dataset]


def num_base():
    """Number of base classes: remapped ids 0..K-1 are the bases."""
    return config_check.num_bases(config, CUSTOM_SPLIT)


def globals_shards(folder):
    return oake_shard_files("globals", folder)


def folder_split(folder):
    """Image folder name -> split (train2017 -> train)."""
    return folder.removesuffix("2017")


def oake_source(wildcards):
    """The original annotation file listing every image of the split (OAKE covers all images)."""
    split = folder_split(wildcards.folder)
    if DATASET == "demo":
        return f"results/demo_data/annotations/instances_{split}.json"
    if DATASET == "custom":
        return custom_source(split)
    if DATASET == "lvis":
        return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_{split}.json"
    return f"{DATA_ROOT}/coco/annotations/instances_{split}2017.json"


def predict_annotations():
    """The images the detector runs on: those of the evaluation file (COCO: the .min file, as the reference)."""
    if DATASET in ("demo", "coco", "custom"):
        return all_classes_file(DATASET, "val").replace(".json", ".min.json")
    return all_classes_file(DATASET, "val")


def oake_images(wildcards):
    return image_dir(DATASET, folder_split(wildcards.folder))
