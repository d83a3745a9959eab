"""Detector parts against hand computations: classifiers, distillation losses, schedules, labels, ensemble."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.detector import classifiers as C
from pipeline.models.detector import losses as L


def prompts(names, dim=4, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return {"names": list(names), "embeddings": F.normalize(torch.randn(len(names), dim, generator=g), dim=-1), **extra}


def test_object_and_block_l1_global_mse_sum_by_hand():
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    t = torch.zeros(2, 2)
    assert L.object_l1(s, t).item() == pytest.approx(0.5)  # (0 + 1 + 1 + 0) / 4
    assert L.block_l1(s, t).item() == pytest.approx(0.5)
    assert L.global_mse_sum(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == pytest.approx(5.0)
    # sum reduction: doubling the batch doubles the loss
    assert L.global_mse_sum(torch.tensor([[1.0, 2.0]] * 2), torch.zeros(2, 2)).item() == pytest.approx(10.0)


def test_block_relation_by_hand():
    s = torch.eye(2)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # Gram(s) = I, Gram(t) = all ones: squared differences 0, 1, 1, 0 -> mean 0.5
    assert L.block_relation(s, t).item() == pytest.approx(0.5)


def test_warmup_weights_and_the_frozen_asl_quirk():
    w = L.WarmupWeight(256, 200)
    assert w.value == pytest.approx(256 / 200)  # step starts at 1
    for _ in range(199):
        w.step()
    assert w.value == pytest.approx(256) and w.iteration == 200
    w.step()
    assert w.value == pytest.approx(256)
    asl = L.WarmupWeight(4, 2000, frozen=True)
    for _ in range(5000):
        asl.step()
    assert asl.value == pytest.approx(0.002)
    assert L.WarmupWeight(16, 1000, frozen=True).value == pytest.approx(0.016)


def test_block_labels_any_overlap():
    blocks = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [100, 100, 110, 110]])
    gt = torch.tensor([[9.0, 2, 12, 4], [10, 10, 15, 15], [0, 0, 1, 1], [0, 0, 50, 50]])
    labels = torch.tensor([0, 1, 2, 1])
    crowd = torch.tensor([0, 0, 0, 1])
    got = L.block_labels(blocks, gt, labels, num_classes=3, gt_crowd=crowd)
    # gt0 (class 0) overlaps blocks 0 and 1; gt1 only touches blocks 0/1 at an edge (zero area): no label;
    # gt2 (class 2) overlaps block 0; gt3 is crowd: ignored
    expected = torch.tensor([[True, False, True], [True, False, False], [False, False, False]])
    assert torch.equal(got, expected)
    assert torch.equal(L.image_labels(torch.tensor([2, 0, 2, 5]), 3), torch.tensor([True, False, True]))


def test_ensemble_formula_on_known_probabilities():
    p_b = torch.tensor([[0.5, 0.3, 0.2]])  # classes 0 (base), 1 (novel), background
    p_o = torch.tensor([[0.8, 0.2]])
    bbox_logits = p_b.log()
    object_logits = torch.cat([p_o.log(), torch.tensor([[3.0]])], 1)  # object background is ignored
    got = L.ensemble_scores(bbox_logits, object_logits, num_base=1).exp()[0]
    s0 = 0.5 ** (2 / 3) * 0.8 ** (1 / 3)
    s1 = 0.3 ** (1 / 3) * 0.2 ** (2 / 3)
    torch.testing.assert_close(got, torch.tensor([s0, s1, 1 - s0 - s1]), atol=1e-6, rtol=0)
    assert got.sum().item() == pytest.approx(1.0)  # a later softmax of the logs returns the same scores
    torch.testing.assert_close(L.ensemble_scores(bbox_logits, object_logits, 1).softmax(-1)[0], got)


def test_vild_classifier_masks_novel_in_training_only():
    names = ["a", "b", "c"]
    clf = C.ViLDClassifier(8, prompts(["c", "b", "a", "zzz"]), names, num_base=2, background=True)
    x = torch.randn(5, 8)
    clf.train()
    train_logits = clf(x)
    assert train_logits.shape == (5, 4)  # 3 classes + background
    assert torch.isinf(train_logits[:, 2]).all() and torch.isfinite(train_logits[:, [0, 1, 3]]).all()
    clf.eval()
    test_logits = clf(x)
    assert torch.isfinite(test_logits).all()
    # tau: train 0.007, test 0.01, on the same cosine
    cos = clf.cosine(x)
    torch.testing.assert_close(test_logits, cos / 0.01)
    torch.testing.assert_close(train_logits[:, :2], cos[:, :2] / 0.007)
    # rows are picked by name, not position
    torch.testing.assert_close(clf.embeddings, prompts(["c", "b", "a", "zzz"])["embeddings"][[2, 1, 0]])
    # the cosine is the normalised projection against the class rows
    proj = clf.linear(x)
    assert torch.allclose(proj.norm(dim=-1), torch.ones(5), atol=1e-6)
    torch.testing.assert_close(cos[:, :3], proj @ clf.embeddings.T)


def test_object_head_background_is_frozen_and_disabled():
    clf = C.ViLDClassifier(8, prompts("ab"), ["a", "b"], num_base=2, background=True, background_enabled=False)
    clf.eval()
    logits = clf(torch.randn(3, 8))
    assert torch.isinf(logits[:, -1]).all() and not clf.background.requires_grad


def test_learnable_background_gets_gradient():
    clf = C.ViLDClassifier(8, prompts("ab"), ["a", "b"], num_base=1, background=True)
    clf.train()
    F.cross_entropy(clf(torch.randn(4, 8)), torch.tensor([0, 2, 2, 0])).backward()
    assert clf.background.grad is not None and clf.background.grad.abs().sum() > 0
    assert clf.embeddings.grad is None and not clf.embeddings.requires_grad  # text rows stay fixed
    assert "embeddings" not in clf.state_dict()  # non-persistent: not saved in checkpoints


def test_scaled_classifier_uses_the_file_scaler_and_bias():
    p = prompts("ab", scaler=20.0, bias=4.0)
    clf = C.ScaledClassifier(8, p, ["a", "b"], num_base=2).eval()
    x = torch.randn(3, 8)
    torch.testing.assert_close(clf(x), clf.cosine(x) * 20.0 - 4.0)
    with pytest.raises(ValueError, match="scaler"):
        C.ScaledClassifier(8, prompts("ab"), ["a", "b"], num_base=2)


def test_asymmetric_loss_is_shared_with_the_prompt_stage():
    from pipeline.models.detector.losses import asymmetric_loss

    assert L.asymmetric_loss is asymmetric_loss
    assert asymmetric_loss(torch.tensor([0.9]), torch.tensor([1.0])).item() == pytest.approx(-math.log(0.9))


def test_scale_grad_by_hand():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = L.scale_grad(x, 0.25)
    torch.testing.assert_close(y, x.detach())
    (y * torch.tensor([4.0, 8.0, -4.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 2.0, -1.0]))
    assert L.scale_grad(x, 1.0) is x
