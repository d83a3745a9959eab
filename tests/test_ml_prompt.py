"""The learned multi-label prompt (method 3.3) and the Asymmetric Loss (6.5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline import prompts
from pipeline.core import dry_run as dry
from pipeline.models.clip import load_clip, text
from pipeline.models.detector.losses import asymmetric_loss
from pipeline.oake import globals as oake_globals
from pipeline.prompts import ml as ml_prompt
from tests.conftest import make_demo_split, tiny_clip_args

TINY = "OADP-Tiny-ViT-32"


@pytest.fixture(scope="module")
def clip():
    return load_clip(TINY, "random")


def test_asymmetric_loss_by_hand():
    p = torch.tensor([0.9, 0.2, 0.02, 0.5])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    got = asymmetric_loss(p, y)
    expected = [
        -math.log(0.9),  # positive, gamma+ = 0: plain log loss
        -math.log(0.85) * (1 - 0.85) ** 4,  # negative: p_neg = 1 - 0.2 + 0.05
        0.0,  # easy negative: p_neg = min(1.03, 1) = 1 -> log 1 = 0
        -math.log(0.5),
    ]
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-7, rtol=1e-6)
    # the focusing weight carries no gradient
    q = torch.tensor([0.3], requires_grad=True)
    asymmetric_loss(q, torch.tensor([0.0])).sum().backward()
    p_neg = 1 - 0.3 + 0.05
    torch.testing.assert_close(q.grad, torch.tensor([(1 - p_neg) ** 4 / p_neg]))


def test_average_precision_by_hand():
    assert ml_prompt.average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert math.isnan(ml_prompt.average_precision(np.array([0.1, 0.2]), np.array([0, 0])))


def test_initial_context_is_a_photo_of_a(clip):
    names = ["red_circle", "blue square"]
    learner = ml_prompt.PromptLearner(clip.model, names, ml_prompt.MLOptions())
    assert learner.n_ctx == 4
    with torch.no_grad():
        got = learner.text_embeddings()
    want = text.encode_text(clip.model, ["a photo of a red circle.", "a photo of a blue square."])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_training_lowers_the_loss_and_only_touches_the_prompt(clip):
    names = ["a", "b", "c", "d"]
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(64, 3, generator=g) > 0.6).float()
    with torch.no_grad():
        proto = text.encode_text(clip.model, [f"a photo of a {n}." for n in names[:3]])
    images = F.normalize(labels @ proto + 0.05 * torch.randn(64, proto.shape[1], generator=g), dim=-1)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    learner, history = ml_prompt.train(clip.model, names, names[:3], images, labels, ml_prompt.MLOptions(epochs=6))
    assert history[-1] < history[0]
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())  # CLIP stays frozen
    assert float(learner.scaler) != 20.0 and float(learner.bias) != 4.0


def test_ml_cli_on_demo_globals(tmp_path, clip, monkeypatch):
    demo = make_demo_split(tmp_path, num_train=10, num_val=4)
    ann = {}
    for split in ("train", "val"):
        shard = tmp_path / f"globals_{split}.h5"
        oake_globals.main(
            [
                *tiny_clip_args(demo / f"annotations/instances_{split}.json", demo / "images" / split),
                "--output",
                str(shard),
            ]
        )
        ann[split] = shard
    out = tmp_path / "ml.pth"
    argv = [
        "ml",
        "--train-annotations",
        str(tmp_path / "train.base.json"),
        "--num-base",
        "3",
        "--globals",
        str(ann["train"]),
        "--val-annotations",
        str(tmp_path / "val.all.json"),
        "--val-globals",
        str(ann["val"]),
        "--model",
        TINY,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--output",
        str(out),
        "--epochs",
        "2",
    ]
    prompts.main(argv)
    obj = torch.load(out, weights_only=True)
    assert obj["names"] == ["red circle", "blue square", "green star", "red star"]
    assert isinstance(obj["scaler"], float) and isinstance(obj["bias"], float)
    assert torch.allclose(obj["embeddings"].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert obj["meta"]["kind"] == "ml" and len(obj["meta"]["loss_history"].split(",")) == 2
    assert "val_novel_map" in obj["meta"]
    # the learned context is stored: it embeds the file's names (and any other) exactly as the file holds them
    assert obj["context"].shape == (4, clip.model.token_embedding.weight.shape[1])
    again = text.context_embeddings(clip.model, obj["names"], obj["context"])
    torch.testing.assert_close(again, obj["embeddings"], rtol=1e-5, atol=1e-6)
    labels_seen = json.loads((tmp_path / "train.base.json").read_text())["annotations"]
    assert all(a["category_id"] < 3 for a in labels_seen)  # no novel label reaches the prompt's training
    assert Path(out).stat().st_size > 0
    assert obj["meta"]["dry_run"] == "False" and int(obj["meta"]["train_images"]) > 4
    # dry run: one epoch on at most ML_IMAGES images, every name
    monkeypatch.setattr(dry, "ML_IMAGES", 4)
    prompts.main([*argv, "--output", str(tmp_path / "dry.pth"), "--dry-run"])  # --epochs 2 given: 1 wins
    small = torch.load(tmp_path / "dry.pth", weights_only=True)
    assert small["names"] == obj["names"] and small["meta"]["dry_run"] == "True"
    assert small["meta"]["epochs"] == "1" and len(small["meta"]["loss_history"].split(",")) == 1
    assert small["meta"]["train_images"] == "4"
