"""The configuration's layers (workflow/config_layers.py): schema defaults < the project's config.yaml (the demo,
read only for dataset demo) < the working directory's config.yaml < --configfile < --config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workflow import config_layers as layers

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
PROJECT = REPO / "config.yaml"
PRESETS = sorted((REPO / "workflow/presets").glob("ov_*.yaml"))


def schema_defaults(schema=SCHEMA) -> dict:
    out = {}
    for key, prop in schema.get("properties", {}).items():
        if prop.get("properties"):
            out[key] = {**(prop.get("default") or {}), **schema_defaults(prop)}
        elif "default" in prop:
            out[key] = prop["default"]
    return out


def effective(cli: dict, project: Path = PROJECT, workdir_file: Path | None = None) -> dict:
    return layers.merge(schema_defaults(), layers.layered(cli, project, workdir_file, SCHEMA))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_a_preset_run_reads_nothing_from_the_demo_layer(preset, tmp_path):
    cli = layers.merge(yaml.safe_load(preset.read_text()), {"data_root": "/data"})
    with_demo = effective(cli)
    without = effective(cli, project=tmp_path / "absent.yaml")
    assert with_demo == without
    assert with_demo["dataset"] == preset.stem.removeprefix("ov_")
    # and the values the demo sets differently are the schema's (or the preset's) in the preset run
    demo = yaml.safe_load(PROJECT.read_text())
    assert with_demo["proposals"]["lr"] != demo["proposals"]["lr"]
    assert with_demo["clip"]["weights"] != "teacher"


def test_every_key_the_demo_sets_is_restated_by_the_presets():
    """A stricter reading used by the house check: merging the demo layer under a preset changes nothing outside
    the demo-only sections."""
    demo = yaml.safe_load(PROJECT.read_text())
    for preset in PRESETS:
        cfg = yaml.safe_load(preset.read_text())
        merged = layers.merge(layers.merge(schema_defaults(), demo), cfg)
        alone = layers.merge(schema_defaults(), cfg)
        for section in set(merged) - {"demo", "teacher"}:
            assert merged[section] == alone.get(section), (preset.name, section)


def test_the_demo_is_the_default_and_a_workdir_config_overrides_it(tmp_path):
    demo = effective({})
    assert demo["dataset"] == "demo" and demo["clip"]["weights"] == "teacher"
    assert demo["demo"]["classes"] == yaml.safe_load(PROJECT.read_text())["demo"]["classes"]
    local = tmp_path / "config.yaml"
    local.write_text("experiments: [vild_demo]\nproposals: {iters: 3}\n")
    run = effective({}, workdir_file=local)
    assert run["experiments"] == ["vild_demo"]
    assert run["proposals"]["iters"] == 3 and run["proposals"]["depth"] == 18  # the demo's, merged key by key
    assert effective({}, workdir_file=PROJECT) == demo  # the project's own file is one layer, not two


def test_command_line_values_are_typed_by_the_schema():
    # `--config 'oake={shards: 4}' dry_run=true` reaches the Snakefile as strings
    run = effective({"oake": {"shards": "4"}, "dry_run": "true", "train": {"iters": "null"}})
    assert run["oake"]["shards"] == 4 and run["dry_run"] is True and run["train"]["iters"] is None
    assert effective({"data_root": "123"})["data_root"] == "123"  # a string where the schema allows one
    assert effective({"train": {"load_from": "null"}})["train"]["load_from"] is None  # null where allowed


def test_switching_the_dataset_drops_the_demo_layer_but_not_a_workdir_config(tmp_path):
    local = tmp_path / "config.yaml"
    local.write_text("oake: {shards: 8}\n")
    run = effective({"dataset": "coco"}, workdir_file=local)
    assert run["oake"]["shards"] == 8
    assert run["proposals"]["depth"] == 50 and "classes" not in run["demo"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00binary", "not a UTF-8 text file"),
        (b"- a\n- b\n", "needs config keys"),
        (b"a: [1\n", "not valid YAML"),
    ],
)
def test_an_unreadable_config_file_is_named(tmp_path, content, message):
    bad = tmp_path / "config.yaml"
    bad.write_bytes(content)
    with pytest.raises(layers.ConfigError, match=message) as err:
        layers.layered({}, PROJECT, bad, SCHEMA)
    assert str(bad) in str(err.value)


def test_the_configuration_reference_is_current():
    """docs/configuration.md is generated from the schema (tools/config_reference.py)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/config_reference.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# schema key -> (stage module, subcommand or None, argparse dest): options that a rule passes from the config
CLI_OPTIONS = {
    "proposals.arch": ("pipeline.proposals", "train", "arch"),
    "proposals.depth": ("pipeline.proposals", "train", "depth"),
    "proposals.backbone_init": ("pipeline.proposals", "train", "backbone_init"),
    "proposals.iters": ("pipeline.proposals", "train", "iters"),
    "proposals.epochs": ("pipeline.proposals", "train", "epochs"),
    "proposals.steps": ("pipeline.proposals", "train", "steps"),
    "proposals.lr_batch": ("pipeline.proposals", "train", "lr_batch"),
    "proposals.batch_size": ("pipeline.proposals", "train", "batch_size"),
    "proposals.lr": ("pipeline.proposals", "train", "lr"),
    "proposals.scale": ("pipeline.proposals", "train", "scale"),
    "proposals.gpus": ("pipeline.proposals", "train", "gpus"),
    "proposals.effective_batch": ("pipeline.proposals", "train", "effective_batch"),
    "proposals.max_per_img": ("pipeline.proposals", "predict", "max_per_img"),
    "oake.shards": ("pipeline.oake.globals", None, "shards"),
    "oake.precision": ("pipeline.oake.globals", None, "precision"),
    "on_bad_image": ("pipeline.oake.globals", None, "on_bad_image"),
    "max_image_pixels": ("pipeline.oake.globals", None, "max_image_pixels"),
    "oake.compression": ("pipeline.oake.globals", None, "compression"),
    "oake.block0_box": ("pipeline.oake.blocks", None, "block0_box"),
    "oake.object_storage": ("pipeline.oake.objects", None, "storage"),
    "prompts.ml_epochs": ("pipeline.prompts", "ml", "epochs"),
    "prompts.renormalize": ("pipeline.prompts", "vild", "renormalize"),
    "prompts.exemplars.k": ("pipeline.prompts", "sample-exemplars", "k"),
    "prompts.exemplars.context": ("pipeline.prompts", "vision-avg", "context"),
    "prompts.exemplars.num_augs": ("pipeline.prompts", "vision-avg", "num_augs"),
    "teacher.seed": ("pipeline.teacher", None, "seed"),
    "teacher.batch_size": ("pipeline.teacher", None, "batch_size"),
    "teacher.lr": ("pipeline.teacher", None, "lr"),
    "train.gpus": ("pipeline.train", "fit", "gpus"),
    "train.iters": ("pipeline.train", "fit", "iters"),
    "train.batch_size": ("pipeline.train", "fit", "batch_size"),
    "train.effective_batch": ("pipeline.train", "fit", "effective_batch"),
    "train.backbone": ("pipeline.train", "fit", "backbone"),
    "demo.seed": ("pipeline.demo_data", None, "seed"),
    "demo.num_train": ("pipeline.demo_data", None, "num_train"),
    "demo.num_val": ("pipeline.demo_data", None, "num_val"),
    "demo.crowd_prob": ("pipeline.demo_data", None, "crowd_prob"),
    "demo.novel_in_train": ("pipeline.demo_data", None, "novel_in_train"),
}


def _parser_default(module: str, command: str | None, dest: str):
    import argparse
    import importlib

    parser = importlib.import_module(module).build_parser()
    if command is not None:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command]
    return parser.get_default(dest)


@pytest.mark.parametrize("key", sorted(CLI_OPTIONS))
def test_stage_cli_defaults_agree_with_the_schema(key):
    value = schema_defaults()
    for part in key.split("."):
        value = value[part]
    default = _parser_default(*CLI_OPTIONS[key])
    assert default == value, f"{key}: schema {value!r}, {CLI_OPTIONS[key][0]} --{CLI_OPTIONS[key][2]} {default!r}"
