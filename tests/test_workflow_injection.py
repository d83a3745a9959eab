"""Names a dataset or a config supplies reach the stages as data: a class named like an option (``--out-base=...``,
``-x``) or holding shell syntax stays one name through the real rules and stages, and nothing is written outside
the working directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, custom_dataset_dicts, write_custom_dataset

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

HOSTILE = {
    66: "--out-base=../../x.json",  # the category ids of tests.conftest.CUSTOM_CATEGORIES, renamed
    1000007: "-x",
    10: "$(touch PWNED) `touch PWNED2`; touch PWNED3",
}


def hostile_dataset(root: Path) -> dict[str, str]:
    data = custom_dataset_dicts()
    for coco in data.values():
        for c in coco["categories"]:
            c["name"] = HOSTILE.get(c["id"], c["name"])
    return write_custom_dataset(root, data)


def test_class_names_that_look_like_options_stay_names_through_the_annotations_stage(snakemake_bin, tmp_path):
    run = tmp_path / "deep" / "run"
    run.mkdir(parents=True)
    config = {
        "dataset": "custom",
        "custom": {**hostile_dataset(tmp_path / "data"), "novel": [HOSTILE[66], HOSTILE[1000007]]},
        "clip": {"model": TINY, "weights": "random"},
        "experiments": ["oadp_demo"],
        "prompts": {"kinds": ["vild", "ml"]},
        "proposals": {"backbone_init": "random"},
        "train": {"init": "proposals"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    before = {p for p in tmp_path.rglob("*")}
    targets = [f"results/annotations/custom/{s}.{v}.json" for s in ("train", "val") for v in ("all", "base")]
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(run), "--cores", "1", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    written = {p for p in tmp_path.rglob("*")} - before
    assert all(p.is_relative_to(run) for p in written), sorted(map(str, written - {*run.rglob("*")}))
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "deep" / "x.json").exists()
    assert not list(tmp_path.rglob("PWNED*")) and not list(REPO.glob("PWNED*"))

    for split in ("train", "val"):
        out = json.loads((run / f"results/annotations/custom/{split}.all.json").read_text())
        names = [c["name"] for c in sorted(out["categories"], key=lambda c: c["id"])]
        # bases first in the file's id order (ids 10, 31), then the novels in id order (66, 1000007)
        assert names == [HOSTILE[10], "GREEN STAR", HOSTILE[66], HOSTILE[1000007]], names
