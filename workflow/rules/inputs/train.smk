# Input functions and parameters of the train rules (workflow/rules/train.smk). No rules here.

from pipeline.core import runs as run_names
from pipeline.models.detector import experiment as detector_experiment

# Experiments are configs (pipeline/models/detector/experiment.py): every experiment and variant resolved once per
# parse, by name; what a run reads (prompt kinds, OAKE caches) follows from its resolved heads, never its name.
EXPERIMENTS = detector_experiment.check(config)


# a run is an experiment name (pipeline/core/runs.py: safe in paths and shells), perhaps with its seed mark
RUN_PATTERN = f"{run_names.NAME_PATTERN}(?:[+]seed[0-9]+)?"


def run_experiment(wildcards):
    """The resolved experiment of a run (E or E+seedN): one of experiments or variants, or a shipped config that a
    later stage asks for (detect.experiment, export_instructcv.sources)."""
    name, _ = run_names.split_run(wildcards.experiment)
    if name not in EXPERIMENTS:
        other = detector_experiment.check(
            {**config, "experiments": [name], "variants": {}}
        )
        return other[name]
    return EXPERIMENTS[name]


PROMPT_FILES = {"vild": "vild", "ml": "ml", "detpro": "detpro_lvis"}


def experiment_cache_folder(experiment, kind):
    """The folder of the OAKE cache of one kind that an experiment's head distils from: the kind at the run's
    extraction settings, or at a variant's own (variants.<name>.oake; oake_kind_folder)."""
    return oake_kind_folder(kind, experiment.oake, f"variants.{experiment.name}.oake")


def experiment_cache_shards(experiment, kind, folder=OAKE_FOLDERS[0]):
    """The OAKE shards of one kind that an experiment's heads distil from (training images)."""
    return oake_shard_files(experiment_cache_folder(experiment, kind), folder)


def read_caches():
    """The OAKE cache folders (kind and extraction settings) that trained experiments distil from, each once, in
    kind order (those of train.import read none)."""
    trained = [e for n, e in EXPERIMENTS.items() if n not in config["train"]["import"]]
    folders = [
        experiment_cache_folder(e, kind)
        for kind in detector_experiment.CACHE_ORDER
        for e in trained
        if kind in e.caches
    ]
    return list(dict.fromkeys(folders))


def train_inputs(wildcards):
    """What an experiment's training reads: the prompt files of its classifiers, base annotations, and the OAKE
    caches its heads distil from (its resolved config's heads)."""
    experiment = run_experiment(wildcards)
    configs = list(DETECTOR_CONFIGS)
    if detector_experiment.is_path(experiment.config):
        configs.append(experiment.config)  # the user's file: editing it retrains the experiment
    inputs = {
        "names": all_classes_file(DATASET, "val"),
        "annotations": base_file(DATASET, "train"),
        "images": image_dir(DATASET, "train"),
        # the detector config files: editing one retrains the experiments built from it
        "configs": configs,
    }
    if config["train"]["init"] == "proposals":
        inputs["init"] = f"results/proposals/{DATASET}/rpn/final.pth"
    # the initial weights from elsewhere (config.smk checked that they exist): load_from, backbone
    for key in ("train.options.load_from", "train.load_from", "train.backbone"):
        if key in PRETRAINED:
            inputs[key.rsplit(".", 1)[1]] = PRETRAINED[key]
    # the prompt files its classifiers read (among prompts.kinds: checked at parse time)
    for kind in experiment.prompts:
        inputs[f"prompt_{kind}"] = f"results/prompts/{PROMPT_FILES.get(kind, kind)}.pth"
    for kind in experiment.caches:
        inputs[kind] = experiment_cache_shards(experiment, kind)
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
    """train.iters / batch_size / effective_batch / options and the initial weights (inputs init, load_from,
    backbone) as pipeline.train arguments (argv words)."""
    t = config["train"]
    args = []
    if t["iters"] is not None:
        args += ["--iters", str(t["iters"])]
    if t["batch_size"] is not None:
        args += ["--batch-size", str(t["batch_size"])]
    args += ["--effective-batch", t["effective_batch"]]
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
    """The experiments of train.import as a wildcard pattern (names: pipeline.core.runs.NAME_PATTERN)."""
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


def experiment_runs():
    """Every run: each experiment and variant (its config's seed) followed by its seed runs E+seedN, one per N of
    train.seeds (pipeline/core/runs.py); with train.seeds [] exactly the experiments and variants."""
    return run_names.all_runs(EXPERIMENTS, config["train"]["seeds"])


def run_config_args(wildcards):
    """pipeline.train fit / released detector arguments that make a run's config: the experiment's config (a
    shipped name or the user's file), a variant's overrides, and a seed run's randomness.seed=N (after
    train.options, so they win)."""
    experiment = run_experiment(wildcards)
    seed = run_names.split_run(wildcards.experiment)[1]
    options = experiment.cli_options()
    if seed is not None:
        options.append(f"randomness.seed={seed}")
    args = [f"--config={experiment.config}"]
    return args + (["--cfg-options", *options] if options else [])
