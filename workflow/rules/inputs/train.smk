# Input functions and parameters of the train rules (workflow/rules/train.smk). No rules here.


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
    # the initial weights from elsewhere (config.smk checked that they exist): load_from, backbone
    for key in ("train.options.load_from", "train.load_from", "train.backbone"):
        if key in PRETRAINED:
            inputs[key.rsplit(".", 1)[1]] = PRETRAINED[key]
    # every classifier prompt file configured; the experiment config picks the kinds it reads (and names a
    # missing one at run time)
    files = {"vild": "vild", "ml": "ml", "detpro": "detpro_lvis"}
    for kind in config["prompts"]["kinds"]:
        if kind in files:
            inputs[f"prompt_{kind}"] = f"results/prompts/{files[kind]}.pth"
    for kind in kinds:
        inputs[kind] = oake_shard_files(kind, OAKE_FOLDERS[0])
    return inputs


def train_shard_args(wildcards, input):
    """CLI arguments (argv words) naming the prompt and cache inputs the experiment uses."""
    args = []
    for key in input.keys():
        if key.startswith("prompt_"):
            args += ["--prompt", f"{key[len('prompt_'):]}={input[key]}"]
    for kind in ("globals", "blocks", "objects"):
        if kind in input.keys():
            args += [f"--{kind}", *input[kind]]
    return args


def train_options(wildcards, input):
    """train.iters / batch_size / options and the initial weights (inputs init, load_from, backbone) as
    pipeline.train arguments (argv words)."""
    t = config["train"]
    args = []
    if t["iters"] is not None:
        args += ["--iters", str(t["iters"])]
    if t["batch_size"] is not None:
        args += ["--batch-size", str(t["batch_size"])]
    if "backbone" in input.keys():
        args += ["--backbone", input.backbone]
    options = dict(t["options"])
    for key in (
        "init",
        "load_from",
    ):  # the proposal RPN, or the file of train.load_from / options.load_from
        if key in input.keys():
            options["load_from"] = input[key]
    if options:
        args += ["--cfg-options"] + [f"{k}={v}" for k, v in options.items()]
    return args + dry_run_flag()


def train_import_inputs(wildcards):
    """What converting a released checkpoint (train.import) reads: the file, the class names, the prompt files and
    the detector configs of train_inputs (no images, annotations, caches or initial weights).
    """
    inputs = {
        k: v
        for k, v in train_inputs(wildcards).items()
        if k in ("names", "configs") or k.startswith("prompt_")
    }
    inputs["checkpoint"] = config["train"]["import"][wildcards.experiment]
    return inputs


def train_import_options(wildcards):
    """train.options (but load_from: the released weights replace every initial weight) as the converter's
    --cfg-options (argv words): the imported model is configured as the trained one would be.
    """
    options = {k: v for k, v in config["train"]["options"].items() if k != "load_from"}
    if not options:
        return []
    return ["--cfg-options"] + [f"{k}={v}" for k, v in options.items()]


def imported_experiments():
    """The experiments of train.import as a wildcard pattern (names are [A-Za-z0-9_]: the schema's pattern)."""
    return "|".join(config["train"]["import"])


def _detector_configs():
    """The detector config files as paths that do not depend on how the Snakefile was named (``-s ../Snakefile``)
    or where the project lies: resolved, and relative to the working directory when they are inside it (the
    usual project folder, which can then be moved), else absolute."""
    here = Path.cwd().resolve()
    root = (Path(workflow.basedir) / "pipeline/models/detector/configs").resolve()
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
# pipeline/report/seeds.py spells the mark the same (here in two parts: `snakemake --lint` reads a string literal
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
        return []
    if not seed.isdigit():
        raise ValueError(
            f"run {wildcards.experiment!r}: expected EXPERIMENT{SEED_MARK}N with an integer N"
        )
    return [f"--config={experiment}", "--cfg-options", f"randomness.seed={int(seed)}"]
