"""OAKE extraction variants: the settings the paper ablates (crop strategy, object-aware masking) as stage options
recorded in the shard attrs, and the folder a variant's shards live in (pipeline/oake/settings.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline.formats import feature_cache as cache
from pipeline.models.clip import preprocess, vision
from pipeline.oake import objects
from pipeline.oake import settings as oake_settings
from tests.test_oake_extract import FP16, argv, clip, demo, image, val_ids, write_proposals  # noqa: F401 (fixtures)

DEFAULTS = {"expand_mode": "adaptive", "object_masking": True}


# ---- folder names ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "objects_folder"),
    [
        ({}, "objects"),
        ({"expand_mode": "constant"}, "objects-expand_constant"),
        ({"object_masking": False}, "objects-mask_off"),
        ({"object_masking": False, "expand_mode": "rectangle"}, "objects-expand_rectangle-mask_off"),
        ({"expand_mode": "adaptive", "object_masking": True}, "objects"),  # the defaults spelled out
    ],
)
def test_a_kind_folder_names_the_settings_that_differ_from_the_defaults(settings, objects_folder):
    full = oake_settings.resolve(DEFAULTS, settings)
    assert oake_settings.kind_folder("objects", full, DEFAULTS) == objects_folder
    # no setting changes globals or blocks: their folders stay the default ones
    assert oake_settings.kind_folder("globals", full, DEFAULTS) == "globals"
    assert oake_settings.kind_folder("blocks", full, DEFAULTS) == "blocks"
    # the folder's suffix gives the settings back
    assert oake_settings.parse_suffix(objects_folder[len("objects") :], "objects", DEFAULTS) == full


def test_the_same_settings_share_one_folder_whatever_the_run_defaults_say():
    # run A sets the crop strategy for everything; run B keeps the reference's and has a variant with constant
    run_a = {**DEFAULTS, "expand_mode": "constant"}
    folder_a = oake_settings.kind_folder("objects", oake_settings.resolve(run_a), DEFAULTS)
    folder_b = oake_settings.kind_folder(
        "objects", oake_settings.resolve(DEFAULTS, {"expand_mode": "constant"}), DEFAULTS
    )
    assert folder_a == folder_b == "objects-expand_constant"


def test_unknown_settings_and_folders_are_refused():
    with pytest.raises(
        ValueError, match=r"config key 'variants.x.oake': unknown OAKE extraction setting\(s\) \['crop'\]"
    ):
        oake_settings.resolve(DEFAULTS, {"crop": "constant"}, key="variants.x.oake")
    for suffix in ("-mask_on", "-mask_off-expand_constant", "-blur", "-expand_constant-expand_rectangle", "x"):
        with pytest.raises(ValueError, match="OAKE folder"):
            oake_settings.parse_suffix(suffix, "objects", DEFAULTS)
    with pytest.raises(ValueError, match="names no extraction setting of globals"):
        oake_settings.parse_suffix("-mask_off", "globals", DEFAULTS)


# ---- masking off -----------------------------------------------------------------------------------------------------
def test_masking_off_is_the_half_stride_cls_and_changes_the_object_rows(clip):  # noqa: F811
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    partial = torch.zeros(3, 14, 14, dtype=torch.bool)
    partial[:, 4:9, 3:10] = True
    on = vision.ObjectAwareEncoder(clip.model.visual)
    off = vision.ObjectAwareEncoder(clip.model.visual, masking=False)
    with torch.inference_mode():
        masked, unmasked, cls = on(x, partial), off(x, partial), on.encode_cls(x)
    torch.testing.assert_close(unmasked, cls, atol=1e-6, rtol=0)
    assert (masked - unmasked).abs().max() > 1e-2
    torch.testing.assert_close(unmasked.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)


# ---- a real extraction with a variant setting ------------------------------------------------------------------------
def test_an_objects_variant_extracts_its_crops_without_the_mask(tmp_path, demo, clip):  # noqa: F811
    props = tmp_path / "val.h5"
    boxes = write_proposals(demo, props)
    default, variant = tmp_path / "default.h5", tmp_path / "variant.h5"
    objects.main(argv(demo, default, "--proposals", str(props)))
    objects.main(argv(demo, variant, "--proposals", str(props), "--expand-mode", "constant", "--no-object-masking"))
    a, b = cache.ShardReader(default), cache.ShardReader(variant)
    assert (a.attrs["expand_mode"], a.attrs["object_masking"]) == ("adaptive", True)
    assert (b.attrs["expand_mode"], b.attrs["object_masking"]) == ("constant", False)
    image_id = val_ids(demo)[0]
    kept = boxes[image_id][:-1]
    np.testing.assert_array_equal(b.get(image_id)["boxes"], a.get(image_id)["boxes"])  # the same proposals
    crops, masks = preprocess.object_inputs(image(demo, image_id), kept, 14, "constant")
    with torch.inference_mode():
        direct = vision.ObjectAwareEncoder(clip.model.visual).encode_cls(preprocess.normalize_uint8(crops)).numpy()
    np.testing.assert_allclose(b.get(image_id)["embeddings"], direct, atol=FP16)
    assert np.abs(b.get(image_id)["embeddings"] - a.get(image_id)["embeddings"]).max() > 0.05


def test_a_partial_shard_of_other_settings_is_started_again(tmp_path, demo):  # noqa: F811
    props = tmp_path / "val.h5"
    write_proposals(demo, props)
    broken = tmp_path / "demo"
    shutil.copytree(demo, broken)
    ids = val_ids(demo)
    (broken / "images/val" / f"{ids[3]:012d}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "shard-000.h5"
    with pytest.raises(ValueError, match="unreadable image"):
        objects.main(argv(broken, out, "--proposals", str(props)))  # the default settings, 3 images committed
    shutil.copy(demo / "images/val" / f"{ids[3]:012d}.jpg", broken / "images/val")
    log = tmp_path / "objects.log"
    stats = objects.main(
        argv(broken, out, "--proposals", str(props), "--expand-mode", "longest_edge", "--log", str(log))
    )
    assert stats["images"] == len(ids)  # nothing kept from the adaptive crops
    assert "discarding partial shard and starting fresh: attrs differ: expand_mode: 'adaptive' -> 'longest_edge'" in (
        log.read_text()
    )
    assert cache.ShardReader(out).attrs["expand_mode"] == "longest_edge"
    assert json.loads(cache.ShardReader(out).attrs["skipped"]) == []


# ---- the workflow: one extraction per distinct setting, read by the runs that ask for it -----------------------------
VARIANTS_CONFIG = """
experiments: [oadp_demo]
variants:
  oadp_demo-constant: {from: oadp_demo, oake: {expand_mode: constant}}
  oadp_demo-constant_again: {from: oadp_demo, options: {train_cfg.max_iters: 3}, oake: {expand_mode: constant}}
  oadp_demo-nomask: {from: oadp_demo, oake: {object_masking: false}}
oake: {shards: 2}
detect: {experiment: null}
export_instructcv: {sources: [gt]}
"""


@pytest.mark.slow
def test_the_plan_extracts_each_distinct_setting_once_for_the_runs_that_read_it(snakemake_bin, tmp_path):
    import re
    import subprocess

    from tests.test_oake_extract import REPO

    (tmp_path / "config.yaml").write_text(VARIANTS_CONFIG)
    cmd = [snakemake_bin, "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = re.findall(r"python -m pipeline\.oake\.objects .*--output (\S+) .*--expand-mode (\S+) (--\S+)", proc.stdout)
    assert sorted(jobs) == sorted(
        [
            (f"results/oake/demo/objects/{split}/shard-{i:03d}.h5", "adaptive", "--object-masking")
            for split in ("train", "val")
            for i in range(2)
        ]
        # the variants distil on the training images: their own extraction covers the train split only
        + [
            (f"results/oake/demo/objects-expand_constant/train/shard-{i:03d}.h5", "constant", "--object-masking")
            for i in range(2)
        ]
        + [
            (f"results/oake/demo/objects-mask_off/train/shard-{i:03d}.h5", "adaptive", "--no-object-masking")
            for i in range(2)
        ]
    )
    trains = dict(re.findall(r"python -m pipeline\.train .* --experiment=(\S+) .*?--objects (\S+)", proc.stdout))
    assert trains["oadp_demo"].startswith("results/oake/demo/objects/train/")
    assert trains["oadp_demo-constant"] == trains["oadp_demo-constant_again"]
    assert trains["oadp_demo-constant"].startswith("results/oake/demo/objects-expand_constant/train/")
    assert trains["oadp_demo-nomask"].startswith("results/oake/demo/objects-mask_off/train/")
    # globals and blocks: one extraction each, shared by all four runs
    assert len(re.findall(r"python -m pipeline\.oake\.globals .*--output results/oake/demo/globals/", proc.stdout)) == 4
