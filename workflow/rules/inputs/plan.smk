# Input functions and parameters of the plan rule (workflow/rules/plan.smk). No rules here.

import json
from types import SimpleNamespace


def plan_splits():
    """FOLDER=ANNOTATIONS of every OAKE folder, the training split first: the files listing every image."""
    return [f"{f}={oake_source(SimpleNamespace(folder=f))}" for f in OAKE_FOLDERS]


def plan_expected():
    """The demo's image counts, sizes and classes, for a plan made before its files are generated."""
    if DATASET != "demo":
        return []
    demo = config["demo"]
    args = [
        "--expected-images",
        str(demo["num_train"]),
        str(demo["num_val"]),
        "--expected-sizes",
    ]
    return (
        args + list(demo["sizes"]) + ["--expected-classes", str(len(demo["classes"]))]
    )


def plan_oake_folders():
    """The OAKE folders of the configured extraction settings, one per kind of oake.kinds (every split)."""
    return [oake_kind_folder(kind) for kind in config["oake"]["kinds"]]


def plan_variant_folders():
    """The OAKE folders that only variants read (their own extraction settings; training images)."""
    return [f for f in read_caches() if f not in plan_oake_folders()]


def plan_runs():
    """Every detector run (each experiment and variant, then its seed runs) as RUN=CONFIG."""
    runs = []
    for run in experiment_runs():
        name, _ = run_names.split_run(run)
        runs.append(f"{run}={EXPERIMENTS[name].config}")
    return runs


def plan_run_options():
    """JSON {run: dotted-key overrides}: train.options, a variant's overrides, a seed run's seed."""
    out = {}
    for run in experiment_runs():
        name, seed = run_names.split_run(run)
        options = {**config["train"]["options"], **EXPERIMENTS[name].option_dict}
        if seed is not None:
            options["randomness.seed"] = seed
        out[run] = options
    return json.dumps(out)


def plan_train_args():
    """The detectors' and the RPN's schedule keys that are set (unset keys: the configs' own)."""
    args = []
    for flag, value in (
        ("--train-iters", config["train"]["iters"]),
        ("--train-batch-size", config["train"]["batch_size"]),
        ("--rpn-iters", config["proposals"]["iters"]),
    ):
        if value is not None:
            args += [flag, str(value)]
    if config["train"]["import"]:
        args += ["--imported", *config["train"]["import"]]
    if config["proposals"]["import"]:
        args.append("--proposals-imported")
    if config["dry_run"]:
        args.append("--dry-run")
    return args
