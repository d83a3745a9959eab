# Path helpers and target lists. No rules here.

import os
import shlex
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
# read by every CLIP consumer exactly like a real checkpoint.
TEACHER_CHECKPOINT = "results/teacher/clip.pt"
if config["clip"]["weights"] == "teacher":
    if DATASET != "demo":
        raise ValueError(
            "config key 'clip.weights': 'teacher' (the demo's CLIP teacher) needs dataset 'demo'; "
            f"for '{DATASET}' give real weights, e.g. pretrained/clip/ViT-B-32.pt"
        )
    config["clip"]["weights"] = TEACHER_CHECKPOINT


def teacher_targets():
    """The teacher's report, when the CLIP weights are the teacher's."""
    if config["clip"]["weights"] == TEACHER_CHECKPOINT:
        return ["results/teacher/zeroshot.json"]
    return []


def teacher_budget(wildcards):
    """The teacher's budget as arguments: steps (reproducible) and/or seconds, whichever ends first;
    dry_run: at most 20 steps."""
    t = config["teacher"]
    steps = t["steps"]
    if config["dry_run"]:
        steps = min(steps or 20, 20)
    args = [] if steps is None else ["--steps", str(steps)]
    if t["seconds"] is not None:
        args += ["--seconds", str(t["seconds"])]
    return " ".join(args)


DATA_ROOT = config["data_root"]
SPLITS = ["train", "val"]

if DATASET in ("coco", "lvis") and not DATA_ROOT:
    raise ValueError(
        f"config key 'data_root' is required for dataset '{DATASET}' "
        "(--config data_root=PATH, a tree with coco/ and lvis_v1/ as in the README)"
    )

_NEEDS = {
    "detpro": "detpro",
    "mmovod_text": "descriptions",
    "mmovod_multimodal": "descriptions",
}
for _kind in config["prompts"]["kinds"]:
    if _kind in _NEEDS and not config["prompts"][_NEEDS[_kind]]:
        raise ValueError(
            f"config key 'prompts.{_NEEDS[_kind]}' is required for prompts kind '{_kind}'"
        )


wildcard_constraints:
    split="train|val",
    folder="train|val|train2017|val2017",
    kind="globals|blocks|objects",
    shard="[0-9]{3}",
    dataset="demo|coco|lvis",


def coco_source(wildcards):
    """Original COCO annotation file of one split (reference layout under data_root)."""
    return f"{DATA_ROOT}/coco/annotations/instances_{wildcards.split}2017.json"


def lvis_source(wildcards):
    """Original LVIS v1 annotation file of one split (LVIS images are the COCO 2017 images)."""
    return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_{wildcards.split}.json"


def lvis_train_source(wildcards):
    """Original LVIS v1 training file (for the Detic/MM-OVOD extras)."""
    return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_train.json"


def demo_options():
    """The demo generator's options as CLI arguments (a config change reruns the generator)."""
    demo = config["demo"]
    return {
        "classes": demo["classes"],
        "novel": demo["novel"],
        "sizes": demo["sizes"],
        "objects": demo["objects"],
        "num_train": demo["num_train"],
        "num_val": demo["num_val"],
        "crowd_prob": demo["crowd_prob"],
        "novel_in_train": demo["novel_in_train"],
        "seed": demo["seed"],
        "captions_per_class": demo["captions_per_class"],
        "caption_test_per_class": demo["caption_test_per_class"],
    }


def demo_out_dir(wildcards, output):
    """The generator's output root, derived from its declared outputs."""
    return str(Path(output.coco[0]).parent.parent)


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
        "coco": f"results/annotations/coco/instances_{split}2017.65.json",
        "lvis": f"results/annotations/lvis/lvis_v1_{split}.1203.json",
    }[dataset]


def image_dir(dataset, split):
    """Image folder of a split (LVIS images are the COCO 2017 images)."""
    if dataset == "demo":
        return f"results/demo_data/images/{split}"
    return f"{DATA_ROOT}/coco/{split}2017"


def clip_weights_input():
    """The CLIP weights as an input file (a changed file reruns its consumers); none when random."""
    weights = config["clip"]["weights"]
    return [] if weights == "random" else [weights]


def prompt_vocab_files(wildcards):
    """Annotation files whose class names form the vild vocabulary."""
    datasets = [DATASET] + [d for d in config["prompts"]["vocab_from"] if d != DATASET]
    return [all_classes_file(d, "val") for d in datasets]


def optional_path(section, key):
    """A configured input file, or no input (then its job is never requested; checked at parse time)."""
    return config[section][key] or []


def prompt_targets():
    names = {
        "vild": "vild",
        "ml": "ml",
        "detpro": "detpro_lvis",
        "mmovod_text": "mmovod_text",
        "mmovod_vision_avg": "mmovod_vision_avg",
        "mmovod_multimodal": "mmovod_multimodal",
    }
    return [f"results/prompts/{names[k]}.pth" for k in config["prompts"]["kinds"]]


OAKE_FOLDERS = ["train", "val"] if DATASET == "demo" else ["train2017", "val2017"]


def base_file(dataset, split):
    """The remapped annotation file with base annotations only."""
    return {
        "demo": f"results/annotations/demo/{split}.base.json",
        "coco": f"results/annotations/coco/instances_{split}2017.48.json",
        "lvis": f"results/annotations/lvis/lvis_v1_{split}.866.json",
    }[dataset]


def num_base():
    """Number of base classes: remapped ids 0..K-1 are the bases."""
    if DATASET == "demo":
        return len(config["demo"]["base"])
    return {"coco": 48, "lvis": 866}[DATASET]


def globals_shards(folder):
    return expand(
        "results/oake/{dataset}/globals/{folder}/shard-{shard}.h5",
        dataset=DATASET,
        folder=folder,
        shard=[f"{i:03d}" for i in range(config["oake"]["shards"])],
    )


def folder_split(folder):
    """Image folder name -> split (train2017 -> train)."""
    return folder.removesuffix("2017")


def oake_source(wildcards):
    """The original annotation file listing every image of the split (OAKE covers all images)."""
    split = folder_split(wildcards.folder)
    if DATASET == "demo":
        return f"results/demo_data/annotations/instances_{split}.json"
    if DATASET == "lvis":
        return f"{DATA_ROOT}/lvis_v1/annotations/lvis_v1_{split}.json"
    return f"{DATA_ROOT}/coco/annotations/instances_{split}2017.json"


def oake_images(wildcards):
    return image_dir(DATASET, folder_split(wildcards.folder))


def shard_index(wildcards):
    return int(wildcards.shard)


def oake_shards(wildcards):
    return expand(
        "results/oake/{dataset}/{kind}/{folder}/shard-{shard}.h5",
        dataset=wildcards.dataset,
        kind=wildcards.kind,
        folder=wildcards.folder,
        shard=[f"{i:03d}" for i in range(config["oake"]["shards"])],
    )


def oake_targets():
    """Verified caches of every configured kind and split."""
    return expand(
        "results/oake/{dataset}/{kind}/{folder}/verify.json",
        dataset=DATASET,
        kind=config["oake"]["kinds"],
        folder=OAKE_FOLDERS,
    )


def proposal_pickle(wildcards):
    """The configured reference pickle of a split (proposals.import)."""
    return config["proposals"]["import"][folder_split(wildcards.folder)]


def rpn_work_dir(wildcards, output):
    """The RPN's work dir (checkpoints for resume): a param, not an output, so a failed or requeued job keeps it."""
    return str(Path(output[0]).parent)


def train_inputs(wildcards):
    """What an experiment's training reads: prompts, base annotations, and the OAKE caches its branches use."""
    prefix = wildcards.experiment.split("_", 1)[0]
    kinds = {"vild": ["objects"], "oadp": ["globals", "blocks", "objects"]}.get(
        prefix, []
    )
    inputs = {
        "names": all_classes_file(DATASET, "val"),
        "annotations": base_file(DATASET, "train"),
        "images": image_dir(DATASET, "train"),
        # the detector config files: editing one retrains the experiments built from it
        "configs": DETECTOR_CONFIGS,
    }
    if config["train"]["init"] == "proposals":
        inputs["init"] = f"results/proposals/{DATASET}/rpn/final.pth"
    # every classifier prompt file configured; the experiment config picks the kinds it reads (and names a
    # missing one at run time)
    files = {"vild": "vild", "ml": "ml", "detpro": "detpro_lvis"}
    for kind in config["prompts"]["kinds"]:
        if kind in files:
            inputs[f"prompt_{kind}"] = f"results/prompts/{files[kind]}.pth"
    for kind in kinds:
        inputs[kind] = expand(
            "results/oake/{dataset}/{kind}/{folder}/shard-{shard}.h5",
            dataset=DATASET,
            kind=kind,
            folder=OAKE_FOLDERS[0],
            shard=[f"{i:03d}" for i in range(config["oake"]["shards"])],
        )
    return inputs


def train_shard_args(wildcards, input):
    """CLI arguments naming the prompt and cache inputs the experiment uses."""
    args = []
    for key in input.keys():
        if key.startswith("prompt_"):
            args += ["--prompt", f"{key[len('prompt_'):]}={input[key]}"]
    for kind in ("globals", "blocks", "objects"):
        if kind in input.keys():
            args += [f"--{kind}", *input[kind]]
    return " ".join(args)


def train_options(wildcards):
    """train.iters / batch_size / options as pipeline.train arguments (shell-quoted)."""
    t = config["train"]
    args = []
    if t["iters"] is not None:
        args += ["--iters", str(t["iters"])]
    if t["batch_size"] is not None:
        args += ["--batch-size", str(t["batch_size"])]
    options = dict(t["options"])
    if t["init"] == "proposals":
        options["load_from"] = f"results/proposals/{DATASET}/rpn/final.pth"
    if options:
        args += ["--cfg-options"] + [f"{k}={v}" for k, v in options.items()]
    if config["dry_run"]:
        args.append("--dry-run")
    return " ".join(shlex.quote(a) for a in args)


def _detector_configs():
    """The detector config files as paths that do not depend on how the Snakefile was named (``-s ../Snakefile``)
    or where the project lies: resolved, and relative to the working directory when they are inside it (the
    usual project folder, which can then be moved), else absolute."""
    here = Path.cwd().resolve()
    root = (Path(workflow.basedir) / "pipeline" / "detector" / "configs").resolve()
    return sorted(
        str(p.relative_to(here)) if p.is_relative_to(here) else str(p)
        for p in root.rglob("*.py")
    )


DETECTOR_CONFIGS = _detector_configs()


def train_work_dir(wildcards, output):
    """The experiment's work dir (checkpoints for resume): a param, not an output."""
    return str(Path(output[0]).parent)


# Seed runs: every experiment E also trains as run E+seedN for each N of train.seeds (its config, randomness.seed=N,
# own work dir results/train/E+seedN/ and evaluation results/evaluate/E+seedN/); the report groups them with E.
# pipeline/report_seeds.py spells the mark the same (here in two parts: `snakemake --lint` reads a string literal
# that starts with '+' as path composition).
SEED_MARK = "+" + "seed"


def experiment_runs():
    """Every training run: each experiment (its config's seed) followed by its seed runs; with train.seeds []
    exactly config["experiments"]."""
    runs = []
    for e in config["experiments"]:
        runs.append(e)
        runs.extend(f"{e}{SEED_MARK}{n}" for n in config["train"]["seeds"])
    return runs


def seed_run_args(wildcards):
    """pipeline.train fit arguments of a seed run E+seedN: E's config and randomness.seed=N (after train.options,
    so it wins); none for E itself."""
    experiment, mark, seed = wildcards.experiment.rpartition(SEED_MARK)
    if not mark:
        return ""
    if not seed.isdigit():
        raise ValueError(
            f"run {wildcards.experiment!r}: expected EXPERIMENT{SEED_MARK}N with an integer N"
        )
    return f"--config {experiment} --cfg-options randomness.seed={int(seed)}"


def detection_targets():
    return expand(
        "results/evaluate/{experiment}/metrics.json",
        experiment=experiment_runs(),
    )


def predict_annotations():
    """The images the detector runs on: those of the evaluation file (COCO: the .min file, as the reference)."""
    if DATASET in ("demo", "coco"):
        return all_classes_file(DATASET, "val").replace(".json", ".min.json")
    return all_classes_file(DATASET, "val")


def evaluate_inputs(wildcards):
    """Ground truth of the evaluation: the COCO-style file (demo, coco) and/or the LVIS-style file (demo, lvis)."""
    inputs = {}
    if DATASET in ("demo", "coco"):
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
    return " ".join(args)


def report_targets():
    return ["results/report/summary.md"]
