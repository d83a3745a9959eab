"""Experiments are configs: run names, what an experiment reads from its resolved heads (shipped configs, a user's
file by path, variants), a variant's resume fingerprint, and a user's config training by path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import runs
from pipeline.models.detector import experiment as E
from pipeline.models.detector.config import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def user_config(folder: Path, name: str, base: str, body: str = "") -> Path:
    """A user's config file ``folder/name.py`` inheriting the shipped ``base`` by its absolute path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f"_base_ = [{str(CONFIG_DIR / f'{base}.py')!r}]\n{body}")
    return path


def test_run_names():
    assert runs.split_run("vild_demo+seed12") == ("vild_demo", 12)
    assert runs.split_run("oadp_ov_coco-no_block") == ("oadp_ov_coco-no_block", None)
    assert runs.seed_run("vild_demo", 3) == "vild_demo+seed3"
    assert runs.all_runs(["a", "b-x"], [1, 2]) == ["a", "a+seed1", "a+seed2", "b-x", "b-x+seed1", "b-x+seed2"]
    with pytest.raises(ValueError, match=r"EXPERIMENT\+seedN"):
        runs.split_run("vild_demo+seedx")
    assert runs.check_name("oadp_ov_coco-no_block") == "oadp_ov_coco-no_block"
    for bad in ("-rf", "a b", "a/b", "a+seed1", "ö", "a;b", "$x", ""):
        with pytest.raises(ValueError, match="not a valid experiment name"):
            runs.check_name(bad, "variants")


def test_shipped_configs_read_what_their_heads_distil_from():
    got = E.resolve_all(["oadp_ov_coco", "vild_ov_coco", "baseline_ov_coco", "oadp_ov_lvis_released", "oadp_demo"])
    assert got["oadp_ov_coco"].caches == ("globals", "blocks", "objects")
    assert got["oadp_ov_coco"].prompts == ("ml", "vild")
    assert got["vild_ov_coco"].caches == ("objects",) and got["vild_ov_coco"].prompts == ("vild",)
    assert got["baseline_ov_coco"].caches == () and got["baseline_ov_coco"].prompts == ("vild",)
    assert got["oadp_ov_lvis_released"].caches == ("blocks", "objects")  # released without the global head
    assert got["oadp_ov_lvis_released"].prompts == ("detpro",)
    assert got["oadp_demo"].caches == ("globals", "blocks", "objects")


def test_a_renamed_user_config_reads_what_its_base_reads_and_a_removed_head_reads_nothing(tmp_path):
    mine = user_config(tmp_path, "my_oadp", "oadp_ov_coco")
    no_global = user_config(tmp_path, "vild-like", "oadp_ov_coco", "model = dict(global_head=None)\n")
    got = E.resolve_all([str(mine), str(no_global), "oadp_ov_coco"])
    assert list(got) == ["my_oadp", "vild-like", "oadp_ov_coco"]
    assert (got["my_oadp"].caches, got["my_oadp"].prompts) == (got["oadp_ov_coco"].caches, got["oadp_ov_coco"].prompts)
    assert got["my_oadp"].config == str(mine)
    assert got["vild-like"].caches == ("blocks", "objects")


def test_a_variant_of_a_users_file(tmp_path):
    mine = user_config(tmp_path, "mine", "oadp_ov_coco")
    got = E.resolve_all([], {"mine-no_block": {"from": str(mine), "options": {"model.roi_head.block_head": None}}})
    assert got["mine-no_block"].config == str(mine) and got["mine-no_block"].base == "mine"
    assert got["mine-no_block"].caches == ("globals", "objects")


def test_variants_are_a_base_plus_overrides():
    variants = {
        "oadp_ov_coco-object": {"from": "oadp_ov_coco-object_block", "options": {"model.roi_head.block_head": None}},
        "oadp_ov_coco-object_block": {"from": "oadp_ov_coco", "options": {"model": {"global_head": None}}},
        "vild-ml": {"from": "vild_ov_coco", "options": {"model.roi_head.object_head.cls_predictor_cfg.prompts": "ml"}},
    }
    got = E.resolve_all(["oadp_ov_coco"], variants, {"randomness.seed": 3})
    assert list(got) == ["oadp_ov_coco", *variants]
    assert got["oadp_ov_coco-object_block"].caches == ("blocks", "objects")
    assert got["oadp_ov_coco-object"].caches == ("objects",)  # its base's overrides, then its own
    assert got["oadp_ov_coco-object"].config == "oadp_ov_coco"
    assert got["oadp_ov_coco-object"].option_dict == {"model.global_head": None, "model.roi_head.block_head": None}
    assert got["oadp_ov_coco-object"].cli_options() == ["model.global_head=None", "model.roi_head.block_head=None"]
    assert got["oadp_ov_coco-object"].base == "oadp_ov_coco-object_block"
    nested = E.resolve_all(
        [],
        {
            "a": {"from": "oadp_ov_coco", "options": {"model": {"global_head": None}}},
            "b": {"from": "a", "options": {"model": {"roi_head": {"block_head": None}}}},
        },
    )["b"]
    assert nested.caches == ("objects",)
    assert nested.cli_options() == ["model.global_head=None", "model.roi_head.block_head=None"]
    assert got["vild-ml"].prompts == ("ml", "vild") and got["vild-ml"].caches == ("objects",)
    assert got["oadp_ov_coco"].options == ()  # train.options are the run's, not the experiment's


@pytest.mark.parametrize(
    "experiments, variants, message",
    [
        (["nope"], {}, "unknown experiment 'nope'"),
        (["missing/my.py"], {}, "no such detector config file: missing/my.py"),
        (["oadp_ov_coco", "oadp_ov_coco"], {}, "named twice"),
        (["oadp_ov_coco"], {"oadp_ov_coco": {"from": "vild_ov_coco"}}, "also in experiments"),
        ([], {"a b": {"from": "vild_ov_coco"}}, "'a b' is not a valid experiment name"),
        ([], {"x": {"options": {}}}, "variants.x': needs 'from'"),
        ([], {"x": {"from": "y"}, "y": {"from": "x"}}, "made from each other: x -> y -> x"),
        ([], {"x": {"from": "nope"}}, "config key 'variants.x': unknown experiment 'nope'"),
        ([], {"x": {"from": "vild_ov_coco", "options": [1]}}, "variants.x.options"),
        ([], {"x": {"from": "vild_ov_coco", "options": {"work_dir": "a,b"}}}, "option work_dir: 'a,b' would reach"),
    ],
)
def test_bad_experiments_and_variants_name_the_key(experiments, variants, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+").replace("(", r"\(")):
        E.resolve_all(experiments, variants)


def test_prompt_kinds_an_experiment_reads_must_be_configured():
    cfg = {"experiments": ["oadp_ov_coco"], "train": {"options": {}}, "prompts": {"kinds": ["vild"]}}
    with pytest.raises(
        ValueError, match=r"'prompts.kinds': experiment 'oadp_ov_coco' reads the prompt kind\(s\) \['ml'\]"
    ):
        E.check(cfg)
    cfg["prompts"]["kinds"] = ["vild", "ml"]
    assert list(E.check(cfg)) == ["oadp_ov_coco"]


def test_resolving_experiments_imports_no_torch():
    code = (
        "import sys; from pipeline.models.detector import experiment as E; "
        "E.resolve_all(['oadp_demo'], {'v': {'from': 'oadp_demo', 'options': {'model.global_head': None}}}); "
        "print(sorted(m for m in ('torch', 'mmdet', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_a_variants_resume_fingerprint_differs_from_its_bases(tmp_path):
    from pipeline.core import workdir
    from pipeline.models.detector.config import detector_config

    (tmp_path / "vild.pth").write_bytes(b"v")
    (tmp_path / "ml.pth").write_bytes(b"m")
    prompts = {"vild": str(tmp_path / "vild.pth"), "ml": str(tmp_path / "ml.pth")}
    got = E.resolve_all(
        ["oadp_demo"], {"oadp_demo-no_block": {"from": "oadp_demo", "options": {"model.roi_head.block_head": None}}}
    )

    def fingerprint(exp: E.Experiment) -> str:
        cfg = detector_config(
            exp.config, names=["a", "b", "c"], num_base=2, prompts=prompts, work_dir=str(tmp_path / exp.name),
            options=exp.option_dict,
        )  # fmt: skip
        return workdir.fingerprint(workdir.identified_config(cfg.to_dict()))

    base, variant = fingerprint(got["oadp_demo"]), fingerprint(got["oadp_demo-no_block"])
    assert base != variant
    assert fingerprint(got["oadp_demo"]) == base  # the same experiment: the same run


@pytest.mark.slow
def test_a_user_config_by_path_trains(tmp_path):
    """``--config`` a user's file inheriting oadp_demo without the global head: trained (dry run) with the caches
    its heads distil from, blocks and objects; the checkpoint records its config. Then a variant of it without the
    block head, with the words the train rule gives it (its config, its overrides): objects only."""
    import torch

    from pipeline import train
    from tests.test_detector_train import _oadp_demo_setup

    demo, prompt_files = _oadp_demo_setup(tmp_path, num_train=4)
    mine = user_config(tmp_path, "my_oadp", "oadp_demo", "model = dict(global_head=None)\n")
    got = E.resolve_all(
        [str(mine)], {"my_oadp-object": {"from": "my_oadp", "options": {"model.roi_head.block_head": None}}}
    )
    assert got["my_oadp"].caches == ("blocks", "objects") and got["my_oadp"].prompts == ("ml", "vild")
    assert got["my_oadp-object"].caches == ("objects",)

    def fit(exp: E.Experiment) -> dict:
        work = tmp_path / "train" / exp.name
        args = ["fit", f"--experiment={exp.name}", f"--config={exp.config}", "--num-base", "3"]
        args += ["--names-from", str(tmp_path / "train.all.json"), "--annotations", str(tmp_path / "train.base.json")]
        args += ["--images", str(demo / "images/train")]
        for kind in exp.prompts:
            args += ["--prompt", f"{kind}={prompt_files[kind]}"]
        for kind in exp.caches:
            args += [f"--{kind}", str(tmp_path / f"{kind[0]}.h5")]  # the shards _oadp_demo_setup extracted
        args += ["--work-dir", str(work), "--workers", "0", "--dry-run"]
        train.main(args + (["--cfg-options", *exp.cli_options()] if exp.options else []))
        meta = torch.load(work / "final.pth", map_location="cpu", weights_only=True)["meta"]
        assert meta["experiment"] == exp.name
        assert json.loads(json.dumps(meta["config"]["train_cfg"]))["max_iters"] == 4
        return meta["config"]["model"]

    model = fit(got["my_oadp"])
    assert model["global_head"] is None and model["roi_head"]["block_head"] is not None
    model = fit(got["my_oadp-object"])
    assert model["global_head"] is None and model["roi_head"]["block_head"] is None
    assert model["roi_head"]["object_head"] is not None
