"""The configuration's checks (workflow/config_check.py, workflow/config_names.py) as modules: unknown keys and
names with the closest valid one, known CLIP architectures and runs, paths and dotted keys that reach a command
line, the deprecated oake.on_bad_image, the schema's defaults as Snakemake's validate fills them, base-class counts
from core.vocab."""

from __future__ import annotations

import copy

import pytest

from pipeline.core import vocab
from workflow import config_check as C
from workflow import config_layers
from workflow import config_names as N

DEMO = {"clip": {"model": "OADP-Tiny-ViT-32", "weights": "random"}}  # no file from elsewhere, no teacher


def configure(cli: dict) -> C.Checked:
    """The project's demo configuration under ``cli`` (no working-directory config.yaml)."""
    return C.configure(config_layers.merge(DEMO, cli), workdir_file=None)


def refused(cli: dict) -> str:
    with pytest.raises(C.ConfigError) as err:
        configure(cli)
    return str(err.value)


def test_the_demo_configuration_passes_with_its_defaults_filled_in():
    checked = configure({})
    cfg = checked.config
    assert cfg["dataset"] == "demo" and cfg["on_bad_image"] == "error"
    assert cfg["oake"]["shards"] >= 1 and cfg["train"]["seeds"] == [] and cfg["detect"]["score_thr"] > 0
    assert checked.custom_split is None and checked.warnings == ()
    assert C.num_bases(cfg) == len(cfg["demo"]["base"]) == 12


@pytest.mark.parametrize(
    ("cli", "line"),
    [
        ({"trian": {"iters": 4}}, "config key 'trian': unknown key; did you mean 'train'?"),
        ({"oake": {"shard": 3}}, "config key 'oake.shard': unknown key; did you mean 'shards'?"),
        ({"dataset": "cocoo"}, "did you mean 'coco'?"),
        ({"prompts": {"kinds": ["vlid"]}}, "config key 'prompts.kinds.0': 'vlid' is not one of"),
    ],
)
def test_misspelt_keys_and_values_get_the_closest_valid_one(cli, line):
    message = refused(cli)
    assert message.startswith("invalid configuration:\n")
    assert line in message
    if "kinds" in line:
        assert "did you mean 'vild'?" in message


def test_an_unknown_key_with_nothing_close_lists_the_keys_of_its_block():
    assert "config key 'oake.zzzzzz': unknown key (keys here: shards, kinds, " in refused({"oake": {"zzzzzz": 1}})


def test_every_schema_problem_is_one_line():
    message = refused({"trian": 1, "oake": {"shards": "many"}})
    assert message.count("\n  config key ") == 2


@pytest.mark.parametrize("name", ["OADP-Tiny-ViT-32 $(touch PWNED)", "--help", "OADP-Tiny-ViT32"])
def test_clip_model_must_be_a_known_architecture(name):
    message = refused({"clip": {"model": name, "weights": "random"}})
    assert f"config key 'clip.model': {name!r} is not a known CLIP architecture" in message
    if name != "--help":
        assert "did you mean 'OADP-Tiny-ViT-32'?" in message


def test_the_tiny_clip_names_are_those_the_models_register():
    configs = pytest.importorskip("pipeline.models.clip.configs")
    assert N.tiny_clip_names() == list(configs.TINY_CONFIGS)


def test_open_clip_names_are_read_without_importing_open_clip():
    import subprocess
    import sys

    code = (
        "import sys; from workflow import config_names as N; n = N.open_clip_names(); "
        "print(len(n), 'open_clip' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=C.ROOT)
    count, imported, torch = out.stdout.split()
    assert int(count) > 50 and imported == "False" and torch == "False"
    open_clip = pytest.importorskip("open_clip")
    assert set(open_clip.list_models()) - set(N.tiny_clip_names()) <= set(N.open_clip_names())
    assert "ViT-B-32" in N.open_clip_names()


@pytest.mark.parametrize(
    ("cli", "key"),
    [
        ({"detect": {"experiment": "vild_dem"}}, "detect.experiment"),
        ({"export_instructcv": {"sources": ["gt", "vild_dem"], "split": "val"}}, "export_instructcv.sources"),
    ],
)
def test_experiment_names_of_detect_and_export_are_checked(cli, key):
    message = refused(cli)
    assert f"config key '{key}': 'vild_dem' is not a run of this configuration; did you mean 'vild_demo'?" in message


def test_runs_label_val_pairs_only_and_a_checkpoint_is_a_file(tmp_path):
    message = refused({"export_instructcv": {"sources": ["vild_demo"], "split": "train"}})
    assert "config key 'export_instructcv.sources': ['vild_demo'] label val pairs only" in message
    assert configure({"export_instructcv": {"sources": ["gt"], "split": "train"}})
    missing = tmp_path / "final.pth"
    assert f"config key 'detect.checkpoint': no such file: {missing}" in refused(
        {"detect": {"checkpoint": str(missing)}}
    )
    missing.write_bytes(b"x")
    assert configure({"detect": {"checkpoint": str(missing)}}).config["detect"]["checkpoint"] == str(missing)


def test_seed_runs_are_runs():
    checked = configure({"train": {"seeds": [2]}, "export_instructcv": {"sources": ["gt", "vild_demo+seed2"]}})
    assert "vild_demo+seed2" in N.run_names(checked.config)
    assert "vild_demo+seed3" in refused({"train": {"seeds": [2]}, "detect": {"experiment": "vild_demo+seed3"}})


@pytest.mark.parametrize(
    ("cli", "key"),
    [
        ({"detect": {"images": ["--out-dir=/tmp/x"]}}, "detect.images"),
        ({"prompts": {"descriptions": "-d.json"}}, "prompts.descriptions"),
        ({"custom": {"val_images": "a\nb"}}, "custom.val_images"),
        ({"proposals": {"backbone_init": "torchvision:--x.pth"}}, "proposals.backbone_init"),
    ],
)
def test_paths_that_would_read_as_options_or_lines_are_refused(cli, key):
    assert f"config key '{key}':" in refused(cli)


def test_train_option_keys_are_dotted_keys():
    assert "config key 'train.options': '--work-dir' is not a dotted config key" in refused(
        {"train": {"options": {"--work-dir": "/tmp"}}}
    )
    assert configure({"train": {"options": {"model.roi_head.x": 1}}}).config["train"]["options"] == {
        "model.roi_head.x": 1
    }


def test_demo_split_names_get_the_closest_class():
    message = refused({"demo": {"novel": ["red starr"]}})
    assert "config key 'demo.novel': ['red starr'] not among demo.classes; did you mean 'red star'?" in message


def test_the_deprecated_on_bad_image_is_read_with_a_warning():
    checked = configure({"oake": {"on_bad_image": "skip"}})
    assert checked.config["on_bad_image"] == "skip" and "on_bad_image" not in checked.config["oake"]
    assert checked.warnings == ("config key 'oake.on_bad_image' is deprecated: write 'on_bad_image: skip' (top level)",)
    assert configure({"on_bad_image": "skip"}).config["on_bad_image"] == "skip"
    assert "keep 'on_bad_image'" in refused({"on_bad_image": "error", "oake": {"on_bad_image": "skip"}})


def test_defaults_are_filled_as_snakemakes_validate_fills_them():
    validate = pytest.importorskip("snakemake.utils").validate
    schema = C.load_schema()
    for cfg in ({}, {"dataset": "coco", "oake": {"shards": 3}, "train": {"import": {}}}):
        ours = C.fill_defaults(copy.deepcopy(cfg), schema)
        theirs = copy.deepcopy(cfg)
        validate(theirs, str(C.SCHEMA_PATH))
        assert ours == theirs


def test_base_class_counts_come_from_the_vocabulary():
    assert C.num_bases({"dataset": "coco"}) == len(vocab.COCO_BASE) == 48
    assert C.num_bases({"dataset": "lvis"}) == vocab.LVIS_NUM_BASES == 866
    split = vocab.Split(("a", "b", "c"), ("d",))
    assert C.num_bases({"dataset": "custom"}, split) == 3


def test_error_block_has_no_traceback():
    block = C.error_block(C.ConfigError("invalid configuration:\n  config key 'x': bad"))
    assert block.splitlines() == ["Error: invalid configuration (nothing was run):", "  config key 'x': bad"]
    assert C.error_block(C.ConfigError("config key 'y': bad")).endswith(":\nconfig key 'y': bad")


def test_detect_vocabulary_names_hold_no_comma():
    message = refused({"detect": {"vocabulary": ["red star", "a, b"]}})
    assert "config key 'detect.vocabulary': names may not contain a comma: ['a, b']" in message
