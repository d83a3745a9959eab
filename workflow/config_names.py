"""The names and values of a configuration that reach a command line or name something that must exist: the CLIP
architecture (open_clip's names and the tiny configs, read without importing either), the runs that detect and
export_instructcv use, ``train.options`` keys and ``detect.vocabulary`` names, and every path value. Each check
raises :class:`~workflow.config_layers.ConfigError` naming the key, with the closest valid name where there is one.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core import runs
from pipeline.models.detector import experiment as detector_experiment
from workflow.config_layers import ConfigError

CLIP_CONFIGS = Path(__file__).resolve().parents[1] / "pipeline" / "models" / "clip" / "configs.py"


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` with the closest of ``known`` to ``name`` (difflib), or ``""`` when none is close."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def tiny_clip_names(path: Path = CLIP_CONFIGS) -> list[str]:
    """The names of ``TINY_CONFIGS`` in pipeline/models/clip/configs.py, read from its source (no import: the
    module imports open_clip)."""
    for node in ast.parse(path.read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "TINY_CONFIGS" and isinstance(node.value, ast.Dict):
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    raise RuntimeError(f"{path}: no TINY_CONFIGS dict literal")


def open_clip_names() -> list[str]:
    """open_clip's architecture names: its model_configs/*.json, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(p.stem for d in spec.submodule_search_locations for p in Path(d).glob("model_configs/*.json"))


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@-]*")  # such as openai/clip-vit-base-patch32


def check_clip_model(cfg: Mapping) -> None:
    """``clip.model`` is a known architecture: open_clip's or a tiny config of pipeline/models/clip/configs.py
    (with a Hugging Face folder as ``clip.weights``, whose config.json gives the architecture, any plain name)."""
    name, weights = cfg["clip"]["model"], cfg["clip"]["weights"]
    if Path(weights).is_dir() and _PLAIN_NAME.fullmatch(name):
        return
    known = tiny_clip_names() + open_clip_names()
    if name not in known:
        raise ConfigError(
            f"config key 'clip.model': {name!r} is not a known CLIP architecture{did_you_mean(name, known)} "
            f"(open_clip's names or {', '.join(tiny_clip_names())})"
        )


def run_names(cfg: Mapping) -> list[str]:
    """Every run the configuration trains or imports: each experiment (and variant), then its seed runs."""
    return runs.all_runs(detector_experiment.names(cfg), cfg["train"]["seeds"])


def check_run_names(cfg: Mapping) -> None:
    """``detect.experiment`` (unless ``detect.checkpoint`` is given: then it only names the output folder) and every
    ``export_instructcv.sources`` entry but ``gt`` name a run of this configuration (a run's pairs are of val,
    where it predicted); ``detect.checkpoint`` is a file."""
    detect, export = cfg["detect"], cfg["export_instructcv"]
    if detect["checkpoint"] and not Path(detect["checkpoint"]).is_file():
        raise ConfigError(
            f"config key 'detect.checkpoint': no such file: {detect['checkpoint']} (relative to the working "
            f"directory {Path.cwd()})"
        )
    runs_exported = [s for s in export["sources"] if s != "gt"]
    if runs_exported and export["split"] != "val":
        raise ConfigError(
            f"config key 'export_instructcv.sources': {runs_exported} label val pairs only (the detector predicts "
            f"on val), but export_instructcv.split is {export['split']!r}: set it to val or use the source gt"
        )
    known = run_names(cfg)
    wanted = [("detect.experiment", detect["experiment"])] if detect["experiment"] and not detect["checkpoint"] else []
    wanted += [("export_instructcv.sources", s) for s in cfg["export_instructcv"]["sources"] if s != "gt"]
    for key, name in wanted:
        if name not in known:
            valid = known + (["gt"] if key.startswith("export") else [])
            raise ConfigError(
                f"config key '{key}': {name!r} is not a run of this configuration{did_you_mean(name, valid)} "
                f"(runs: {', '.join(valid)}; add an experiment to experiments)"
            )


def check_names(cfg: Mapping) -> None:
    """Names that reach a command line as one ``--opt=NAME`` word: ``train.options`` keys are dotted identifiers
    (``model.roi_head.x``), ``detect.vocabulary`` names hold no comma (the vocabulary is one comma-separated word)."""
    for k in cfg["train"]["options"]:
        if not all(part.isidentifier() for part in str(k).split(".")):
            raise ConfigError(f"config key 'train.options': {k!r} is not a dotted config key (such as model.x.y)")
    vocabulary = cfg["detect"]["vocabulary"]
    if isinstance(vocabulary, list):
        bad = [n for n in vocabulary if "," in n]
        if bad:
            raise ConfigError(
                f"config key 'detect.vocabulary': names may not contain a comma: {bad} (use a vocabulary file)"
            )


# config keys whose values are paths (a trailing ".*": every value of that mapping); a value may be a list
PATH_KEYS = (
    "data_root",
    "clip.weights",
    "prompts.import.*",
    "prompts.detpro",
    "prompts.descriptions",
    "proposals.import.*",
    "train.load_from",
    "train.backbone",
    "train.import.*",
    "oake.import.*",
    "detect.images",
    "detect.vocabulary",
    "detect.checkpoint",
    "custom.train_annotations",
    "custom.val_annotations",
    "custom.train_images",
    "custom.val_images",
)


def _values(cfg: Mapping, dotted: str) -> list[tuple[str, Any]]:
    node: Any = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        return []
    if parts[-1] == "*":
        prefix = ".".join(parts[:-1])
        return [(f"{prefix}.{k}", v) for k, v in node.items()]
    return [(dotted, node.get(parts[-1]))]


def check_paths(cfg: Mapping) -> None:
    """Every path value is a path: one line of printable text that does not start with ``-`` (it would read as an
    option: write ``./-name``). ``detect.vocabulary`` as a list is names, not a path."""
    for dotted in PATH_KEYS:
        for key, value in _values(cfg, dotted):
            if dotted == "detect.vocabulary" and not isinstance(value, str):
                continue
            for path in value if isinstance(value, list) else [value]:
                if path is None or path in ("teacher", "random"):
                    continue
                if not isinstance(path, str) or not path or path.startswith("-") or not path.isprintable():
                    raise ConfigError(
                        f"config key '{key}': {path!r} is not a usable path (one line of printable text, not "
                        "starting with '-': write ./-name for such a file)"
                    )
    init = cfg["proposals"]["backbone_init"]
    if init.split(":", 1)[-1].startswith("-") or not init.isprintable():
        raise ConfigError(f"config key 'proposals.backbone_init': {init!r}: the path is not usable")
