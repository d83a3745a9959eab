"""The run's configuration, checked before any job runs: its layers merged (:mod:`workflow.config_layers`),
deprecated keys moved, the schema's checks and defaults (``workflow/schemas/config.schema.yaml``), then what the
schema cannot say: names that must be known (the CLIP architecture, experiments and runs), values that reach a
command line (paths, ``train.options`` keys), the split of the demo and of a user's dataset, and the files from
elsewhere (:mod:`workflow.pretrained`).

Every problem raises :class:`ConfigError` naming the config key or file, with the closest valid key or name
(``did you mean 'train'?``); :func:`error_block` is the text a user sees. Nothing here imports Snakemake, torch or
open_clip.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from pipeline.core import vocab
from pipeline.formats import custom_dataset
from pipeline.models.detector import experiment as detector_experiment
from workflow import config_layers
from workflow.batches import check_batches
from workflow.config_layers import ConfigError
from workflow.config_names import check_clip_model, check_names, check_paths, check_run_names, did_you_mean
from workflow.pretrained import check_pretrained_files, pretrained_files

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CUSTOM_CHECK_CACHE = Path(".snakemake/oadp/custom_dataset_check.json")  # relative to the working directory


@dataclass(frozen=True)
class Checked:
    """A checked configuration: ``config`` with the schema's defaults filled in, the warnings to show, the files
    from elsewhere it reads (``{config key: path}``) and the split of ``dataset: custom`` (else None)."""

    config: dict
    warnings: tuple[str, ...]
    pretrained: dict[str, str]
    custom_split: vocab.Split | None


def error_block(err: Exception) -> str:
    """What a user reads for a configuration error: one block, no traceback."""
    message = str(err).removeprefix("invalid configuration:\n")
    return f"Error: invalid configuration (nothing was run):\n{message}"


# ----------------------------------------------------------------------------------------------- schema


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _schema_line(err: jsonschema.ValidationError) -> list[str]:
    """One line per problem of a schema error: the key, the message, a suggestion for unknown keys and values."""
    path = [str(p) for p in err.absolute_path]
    key = ".".join(path) or "(top level)"
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = list(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in allowed]
        if unknown and err.schema.get("properties"):
            return [
                f"  config key '{'.'.join([*path, str(k)])}': unknown key{did_you_mean(k, allowed)}"
                + ("" if did_you_mean(k, allowed) else f" (keys here: {', '.join(allowed)})")
                for k in unknown
            ]
    if err.validator == "enum":
        return [f"  config key '{key}': {err.message}{did_you_mean(err.instance, map(str, err.validator_value))}"]
    return [f"  config key '{key}': {err.message}"]


def check_schema(cfg: Mapping, schema: Mapping) -> None:
    """Raise :class:`ConfigError` with one line per schema violation, each naming its config key."""
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path]
    )
    lines = [line for err in errors for line in _schema_line(err)]
    if lines:
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def fill_defaults(cfg: dict, schema: Mapping) -> dict:
    """``cfg`` with every missing key that has a schema default set to it, nested objects included (in place)."""
    for key, prop in schema.get("properties", {}).items():
        if key not in cfg and "default" in prop:
            cfg[key] = copy.deepcopy(prop["default"])
        if isinstance(cfg.get(key), dict) and prop.get("properties"):
            fill_defaults(cfg[key], prop)
    return cfg


# old spelling -> new key (top level), each still read with a warning
DEPRECATED = {("oake", "on_bad_image"): "on_bad_image"}


def move_deprecated(cfg: dict) -> list[str]:
    """Move the values of deprecated keys to their new keys (in place); returns one warning per key moved."""
    warnings = []
    for (section, old), new in DEPRECATED.items():
        block = cfg.get(section)
        if not isinstance(block, dict) or block.get(old) is None:
            continue
        value = block.pop(old)
        if new in cfg and cfg[new] != value:
            raise ConfigError(
                f"config key '{section}.{old}' (deprecated) is {value!r} but '{new}' is {cfg[new]!r}: keep '{new}'"
            )
        cfg[new] = value
        warnings.append(f"config key '{section}.{old}' is deprecated: write '{new}: {value}' (top level)")
    return warnings


# ----------------------------------------------------------------------------------------------- datasets


def check_demo_split(cfg: Mapping) -> None:
    """With dataset demo: ``demo.classes``, ``demo.base`` and ``demo.novel`` are given, base and novel name classes
    of ``demo.classes`` and share no name."""
    if cfg["dataset"] != "demo":
        return
    demo = cfg["demo"]
    missing = [k for k in ("classes", "base", "novel") if not demo.get(k)]
    if missing:
        raise ConfigError(f"config key 'demo.{missing[0]}' is required for dataset 'demo' (missing: {missing})")
    classes = demo["classes"]
    try:
        vocab.check_distinct(classes, "config key 'demo.classes'")
    except vocab.VocabError as err:
        raise ConfigError(str(err)) from None
    for key in ("base", "novel"):
        unknown = [n for n in demo[key] if n not in classes]
        if unknown:
            raise ConfigError(
                f"config key 'demo.{key}': {unknown} not among demo.classes{did_you_mean(unknown[0], classes)} "
                f"(valid names: {classes})"
            )
    both = [n for n in demo["novel"] if n in demo["base"]]
    if both:
        raise ConfigError(f"config key 'demo.novel': {both} also in demo.base (a class is either base or novel)")


_PROMPT_NEEDS = {"detpro": "detpro", "mmovod_text": "descriptions", "mmovod_multimodal": "descriptions"}


def check_dataset_keys(cfg: Mapping) -> None:
    """Keys that one dataset or prompt kind needs: data_root for coco / lvis, the teacher for the demo only, the
    source file of a prompt kind."""
    dataset = cfg["dataset"]
    if dataset in ("coco", "lvis") and not cfg["data_root"]:
        raise ConfigError(
            f"config key 'data_root' is required for dataset '{dataset}' "
            "(--config data_root=PATH, a tree with coco/ and lvis_v1/ as in the README)"
        )
    if cfg["clip"]["weights"] == "teacher" and dataset != "demo":
        raise ConfigError(
            "config key 'clip.weights': 'teacher' (the demo's CLIP teacher) needs dataset 'demo'; "
            f"for '{dataset}' give real weights, e.g. pretrained/clip/ViT-B-32.pt"
        )
    for kind in cfg["prompts"]["kinds"]:
        key = _PROMPT_NEEDS.get(kind)
        if key and not cfg["prompts"][key]:
            raise ConfigError(f"config key 'prompts.{key}' is required for prompts kind '{kind}'")


def check_release_paths(cfg: Mapping) -> None:
    """Every configured release file or folder (oake.import.<kind>, prompts.import.<name>) exists."""
    for section in ("oake", "prompts"):
        for key, value in cfg[section]["import"].items():
            for path in [value] if isinstance(value, str) else value or []:
                if not Path(path).exists():
                    raise ConfigError(f"config key '{section}.import.{key}': no such file or folder: {path}")


def check_train_import(cfg: Mapping) -> None:
    """Every experiment of train.import is an experiment of the run and its released checkpoint exists."""
    names = detector_experiment.names(cfg)
    for experiment, path in cfg["train"]["import"].items():
        key = f"config key 'train.import.{experiment}'"
        if experiment not in names:
            raise ConfigError(
                f"{key}: {experiment!r} is not in experiments {cfg['experiments']}{did_you_mean(experiment, names)} "
                "(add it there)"
            )
        if not Path(path).is_file():
            raise ConfigError(
                f"{key}: no such file: {path} (relative paths are relative to the working directory "
                f"{Path.cwd()}; the reference README's layout: work_dirs/oadp_ov_coco/iter_32000.pth, "
                "work_dirs/oadp_ov_lvis/epoch_24.pth)"
            )


def trained_experiments(cfg: Mapping) -> list[str]:
    """The experiments that train (those of train.import are converted from a released checkpoint instead)."""
    return [e for e in detector_experiment.names(cfg) if e not in cfg["train"]["import"]]


_CUSTOM_REQUIRED = ("train_annotations", "val_annotations", "train_images", "val_images", "novel")


def check_custom_dataset(cfg: Mapping, cache: Path = CUSTOM_CHECK_CACHE) -> vocab.Split | None:
    """With dataset custom: the custom keys are given and the files pass every check of
    pipeline/formats/custom_dataset.py; returns the split (bases first), else None. A passed check is remembered
    in ``cache`` until a file, a folder or a name changes."""
    if cfg["dataset"] != "custom":
        return None
    custom = cfg["custom"]
    missing = [f"custom.{k}" for k in _CUSTOM_REQUIRED if not custom.get(k)]
    if missing:
        raise ConfigError(f"config key '{missing[0]}' is required for dataset 'custom' (missing: {missing})")
    try:
        return custom_dataset.check_dataset_cached(
            {s: custom[f"{s}_annotations"] for s in ("train", "val")},
            {s: custom[f"{s}_images"] for s in ("train", "val")},
            custom["novel"],
            custom["base"],
            cache,
        )
    except ValueError as err:
        raise ConfigError(f"invalid custom dataset (config key 'custom'): {err}") from None


def num_bases(cfg: Mapping, custom_split: vocab.Split | None = None) -> int:
    """The number of base classes of the configured dataset: remapped ids 0..K-1 are the bases."""
    dataset = cfg["dataset"]
    if dataset == "demo":
        return len(cfg["demo"]["base"])
    if dataset == "custom":
        if custom_split is None:
            raise ValueError("dataset custom: num_bases needs the checked split")
        return custom_split.num_bases
    return {"coco": len(vocab.COCO_BASE), "lvis": vocab.LVIS_NUM_BASES}[dataset]


# ----------------------------------------------------------------------------------------------- the run


def configure(
    cli: Mapping, project_dir: Path = ROOT, workdir_file: Path | None = Path("config.yaml"), schema_path=SCHEMA_PATH
) -> Checked:
    """The checked configuration of a run: the layers (the project's ``config.yaml`` in ``project_dir``, the
    working directory's ``workdir_file``, the command line's ``cli``), deprecated keys moved, checked and completed
    by the schema, then every check of this module. Raises :class:`ConfigError` (a ValueError) naming the key."""
    schema = load_schema(schema_path)
    try:
        cfg = config_layers.layered(cli, Path(project_dir) / "config.yaml", workdir_file, schema)
        warnings = move_deprecated(cfg)
        check_schema(cfg, schema)
        fill_defaults(cfg, schema)
        check_paths(cfg)
        check_clip_model(cfg)
        check_names(cfg)
        detector_experiment.check(cfg)  # experiments and variants: names, config files, overrides, prompt kinds
        check_run_names(cfg)
        check_demo_split(cfg)
        check_dataset_keys(cfg)
        check_release_paths(cfg)
        check_train_import(cfg)
        check_batches(cfg)  # gpus x batch_size divide the batch of an optimiser step (train, proposals)
        trained = trained_experiments(cfg)
        warnings += check_pretrained_files(cfg, trained)
        custom_split = check_custom_dataset(cfg)
    except ConfigError:
        raise
    except ValueError as err:  # the checks of the package (experiments, pretrained files) name their key
        raise ConfigError(str(err)) from None
    return Checked(cfg, tuple(warnings), pretrained_files(cfg, trained), custom_split)
