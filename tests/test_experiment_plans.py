"""What the workflow plans for an experiment follows from its config (``snakemake -n``, nothing runs): a renamed copy
of a shipped config plans what the shipped one plans, a config without a global head plans no globals extraction,
and the ablation presets at full size (generated reference tree, real image counts) plan one extraction per
distinct extraction setting."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks import dag
from tests.test_experiments import user_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SHARD = re.compile(r"results/oake/\S+?/shard-\d{3}\.h5")


def layer(path: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump(keys))
    return path


def extractions(output: str) -> set[str]:
    """The planned OAKE extractions: the folders of the planned shard files (kind, settings, split)."""
    return {m.group(0).rsplit("/", 1)[0] for m in SHARD.finditer(output)}


def train_job_inputs(output: str) -> list[set[str]]:
    """The input files of every planned train job (``snakemake -n`` prints each job's block)."""
    jobs = []
    for block in re.split(r"\n(?=\S)", output):
        if block.startswith("rule train:"):
            m = re.search(r"^\s+input: (.*)$", block, re.M)
            jobs.append(set(m.group(1).split(", ")) if m else set())
    return jobs


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "data"
    dag.make_tree(root, scale=0.001)
    return root


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree_full") / "data"
    dag.make_tree(root, scale=1.0)
    return root


def test_a_renamed_copy_of_oadp_ov_coco_plans_what_oadp_ov_coco_plans(small_tree, tmp_path):
    mine = user_config(tmp_path / "mine", "my_oadp", "oadp_ov_coco")
    plans = {}
    for name, entry in (("oadp_ov_coco", "oadp_ov_coco"), ("my_oadp", str(mine))):
        extra = layer(tmp_path / f"{name}.yaml", experiments=[entry])
        plans[name] = dag.plan("coco", small_tree, tmp_path / f"work-{name}", configfiles=[extra])
    assert plans["my_oadp"]["jobs_per_rule"] == plans["oadp_ov_coco"]["jobs_per_rule"]
    assert extractions(plans["my_oadp"]["output"]) == extractions(plans["oadp_ov_coco"]["output"])
    (shipped,), (renamed,) = (train_job_inputs(plans[n]["output"]) for n in ("oadp_ov_coco", "my_oadp"))
    assert renamed - shipped == {str(mine)}  # its own config file (editing it retrains), then the same inputs
    assert shipped <= renamed and any("/globals/" in f for f in shipped)


def test_a_config_without_a_global_head_plans_no_globals_extraction(small_tree, tmp_path):
    """Its training reads no globals; the ml prompt (which its heads read) is trained on globals, so with the
    reference's released ml prompt imported nothing extracts them at all."""
    mine = user_config(tmp_path / "mine", "oadp_no_global", "oadp_ov_coco", "model = dict(global_head=None)\n")
    (tmp_path / "ml_coco.pth").touch()
    built = layer(tmp_path / "built.yaml", experiments=[str(mine)])
    imported = layer(
        tmp_path / "imported.yaml", experiments=[str(mine)], prompts={"import": {"ml": str(tmp_path / "ml_coco.pth")}}
    )
    for name, extra in (("built", built), ("imported", imported)):
        plan = dag.plan("coco", small_tree, tmp_path / name, configfiles=[extra])
        (inputs,) = train_job_inputs(plan["output"])
        assert not any("/globals/" in f for f in inputs), name
        assert any("/blocks/" in f for f in inputs) and any("/objects/" in f for f in inputs), name
        assert plan["jobs_per_rule"]["oake_blocks"] > 0 and plan["jobs_per_rule"]["oake_objects"] > 0
    assert "oake_globals" not in plan["jobs_per_rule"], plan["jobs_per_rule"]
    assert not any("/globals/" in f for f in extractions(plan["output"]))


def test_the_pyramid_ablation_plans_no_extraction_beyond_the_full_methods(full_tree, tmp_path):
    preset = REPO / "workflow/presets/ablation_pyramid.yaml"
    variants = yaml.safe_load(preset.read_text())["variants"]
    full = dag.plan(
        "coco", full_tree, tmp_path / "full", configfiles=[layer(tmp_path / "f.yaml", experiments=["oadp_ov_coco"])]
    )
    ablation = dag.plan("coco", full_tree, tmp_path / "ablation", configfiles=[preset])
    assert extractions(ablation["output"]) == extractions(full["output"])
    for rule in ("oake_globals", "oake_blocks", "oake_objects", "proposals_predict", "prompts_vild"):
        assert ablation["jobs_per_rule"].get(rule) == full["jobs_per_rule"].get(rule), rule
    assert ablation["jobs_per_rule"]["train"] == full["jobs_per_rule"]["train"] + len(variants) == 4
    assert ablation["jobs_per_rule"]["evaluate"] == 4
    trains = train_job_inputs(ablation["output"])
    kinds = Counter(k for job in trains for k in ("globals", "blocks", "objects") if any(f"/{k}/" in f for f in job))
    assert kinds == {"objects": 4, "blocks": 2, "globals": 2}  # each run reads the caches of the heads it keeps


def test_the_oake_ablation_plans_one_extraction_per_switched_setting(full_tree, tmp_path):
    preset = REPO / "workflow/presets/ablation_oake.yaml"
    variants = yaml.safe_load(preset.read_text())["variants"]
    # a second variant with the settings of another (and a head removed) reads that variant's extraction
    again = layer(
        tmp_path / "again.yaml",
        variants={"oadp_ov_coco-crop_constant-object_block": {"from": "oadp_ov_coco-crop_constant",
                                                              "options": {"model.global_head": None}}},
    )  # fmt: skip
    full = dag.plan(
        "coco", full_tree, tmp_path / "full", configfiles=[layer(tmp_path / "f.yaml", experiments=["oadp_ov_coco"])]
    )
    ablation = dag.plan("coco", full_tree, tmp_path / "ablation", configfiles=[preset, again])
    base, planned = extractions(full["output"]), extractions(ablation["output"])
    extra = planned - base
    assert base <= planned and len(extra) == len(variants), sorted(extra)
    assert all(re.fullmatch(r"results/oake/coco/objects-[a-z0-9_-]+/train2017", e) for e in extra), sorted(extra)
    shards = full["jobs_per_rule"]["oake_objects"] // 2  # per split
    assert ablation["jobs_per_rule"]["oake_objects"] == full["jobs_per_rule"]["oake_objects"] + len(variants) * shards
    for rule in ("oake_globals", "oake_blocks", "proposals_predict"):
        assert ablation["jobs_per_rule"][rule] == full["jobs_per_rule"][rule], rule
    trains = train_job_inputs(ablation["output"])
    assert len(trains) == 2 + len(variants)
    objects = Counter(next(f.split("/")[3] for f in job if "/objects" in f) for job in trains)
    assert objects["objects"] == 1 and objects["objects-expand_constant"] == 2
    assert set(objects) == {"objects"} | {e.split("/")[3] for e in extra}


def test_the_demo_ablation_plans_every_variant_over_three_seeds(tmp_path):
    """Each variant trains as its base's config with its overrides (and a seed run's seed last), reads its own
    objects extraction where it switches an OAKE setting, and no run or extraction is planned twice."""
    import subprocess

    preset = REPO / "workflow/presets/demo_ablation.yaml"
    cmd = [dag.snakemake_exe(), "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    proc = subprocess.run([*cmd, "--configfile", str(preset)], capture_output=True, text=True, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    experiments = ["oadp_demo", *yaml.safe_load(preset.read_text())["variants"]]
    trained = re.findall(r"^\s+output: results/train/(\S+)/final\.pth$", out, re.M)
    assert sorted(trained) == sorted(f"{e}{s}" for e in experiments for s in ("", "+seed1", "+seed2"))
    command = next(line for line in out.splitlines() if "--experiment=oadp_demo-object+seed2 " in line)
    assert command.endswith(
        "--config=oadp_demo --cfg-options model.roi_head.block_head=None model.global_head=None randomness.seed=2"
        " 2>&1 | tee -a results/logs/train/oadp_demo-object+seed2.runner.log.history"
        " > results/logs/train/oadp_demo-object+seed2.runner.log"
    )
    assert extractions(out) == {
        *(
            f"results/oake/demo/{kind}/{split}"
            for kind in ("globals", "blocks", "objects")
            for split in ("train", "val")
        ),
        "results/oake/demo/objects-expand_constant/train",
        "results/oake/demo/objects-mask_off/train",
    }
