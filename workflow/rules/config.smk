# The run's configuration: its layers (workflow/config_layers.py) merged, then validated against the schema,
# which fills in its defaults. Fails at parse time, naming the key or file, before any job runs. No rules here.

import importlib.util
from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

_SCHEMA_PATH = workflow.source_path("../schemas/config.schema.yaml")
_spec = importlib.util.spec_from_file_location(
    "config_layers", Path(workflow.basedir) / "workflow" / "config_layers.py"
)
config_layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_layers)


def _check_config(cfg, schema):
    """One line per schema violation, each naming the config key."""
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg),
        key=lambda e: list(e.path),
    )
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.path) or "(top level)"
            lines.append(f"  config key '{key}': {err.message}")
        raise ValueError("invalid configuration:\n" + "\n".join(lines))


def _check_experiments(cfg, configs_dir):
    """Every name in ``experiments`` must be a detector config shipped in ``configs_dir`` (``<name>.py``, the
    ``_base_`` folder excluded); only the file names are read."""
    valid = sorted(
        p.stem for p in Path(configs_dir).glob("*.py") if not p.stem.startswith("_")
    )
    unknown = [e for e in cfg.get("experiments", []) if e not in valid]
    if unknown:
        raise ValueError(
            f"config key 'experiments': unknown experiment(s) {unknown}; valid names (configs in "
            f"{configs_dir}): {valid}"
        )


def _check_demo_split(cfg):
    """With dataset demo: ``demo.classes``, ``demo.base`` and ``demo.novel`` are given, base and novel name classes
    of ``demo.classes`` and share no name."""
    if cfg["dataset"] != "demo":
        return
    demo = cfg["demo"]
    missing = [k for k in ("classes", "base", "novel") if not demo.get(k)]
    if missing:
        raise ValueError(
            f"config key 'demo.{missing[0]}' is required for dataset 'demo' (missing: {missing})"
        )
    classes = demo["classes"]
    for key in ("base", "novel"):
        unknown = [n for n in demo[key] if n not in classes]
        if unknown:
            raise ValueError(
                f"config key 'demo.{key}': {unknown} not among demo.classes; valid names: {classes}"
            )
    both = [n for n in demo["novel"] if n in demo["base"]]
    if both:
        raise ValueError(
            f"config key 'demo.novel': {both} also in demo.base (a class is either base or novel)"
        )


_PROMPT_NEEDS = {
    "detpro": "detpro",
    "mmovod_text": "descriptions",
    "mmovod_multimodal": "descriptions",
}


def _check_dataset_keys(cfg):
    """Keys that one dataset or prompt kind needs: data_root for coco / lvis, the teacher for the demo only, the
    source file of a prompt kind."""
    dataset = cfg["dataset"]
    if dataset in ("coco", "lvis") and not cfg["data_root"]:
        raise ValueError(
            f"config key 'data_root' is required for dataset '{dataset}' "
            "(--config data_root=PATH, a tree with coco/ and lvis_v1/ as in the README)"
        )
    if cfg["clip"]["weights"] == "teacher" and dataset != "demo":
        raise ValueError(
            "config key 'clip.weights': 'teacher' (the demo's CLIP teacher) needs dataset 'demo'; "
            f"for '{dataset}' give real weights, e.g. pretrained/clip/ViT-B-32.pt"
        )
    for kind in cfg["prompts"]["kinds"]:
        key = _PROMPT_NEEDS.get(kind)
        if key and not cfg["prompts"][key]:
            raise ValueError(
                f"config key 'prompts.{key}' is required for prompts kind '{kind}'"
            )


def _configure(cli_config):
    """The validated configuration of this run, defaults filled in."""
    with open(_SCHEMA_PATH) as fh:
        schema = yaml.safe_load(fh)
    try:
        cfg = config_layers.layered(
            cli_config,
            Path(workflow.basedir) / "config.yaml",
            Path("config.yaml"),
            schema,
        )
    except config_layers.ConfigError as err:
        raise ValueError(str(err)) from None
    _check_config(cfg, schema)
    validate(cfg, _SCHEMA_PATH)  # fills in the schema's defaults
    _check_experiments(cfg, Path(workflow.basedir) / "pipeline/models/detector/configs")
    _check_demo_split(cfg)
    _check_dataset_keys(cfg)
    return cfg


_configured = _configure(config)
config.clear()
config.update(_configured)
