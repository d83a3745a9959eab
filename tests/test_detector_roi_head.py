"""OADPRoIHead on synthetic features: every branch's loss is finite and backpropagates; inference ensembles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.formats import prompt_file as prompt_files
from tests.test_detector_modules import build, head_cfg


@pytest.fixture(scope="module")
def prompt_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "vild.pth"
    emb = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    prompt_files.save(path, ["c", "x", "a", "b"], emb, {"kind": "test"})
    return str(path)


def roi_head_cfg(prompt_path: str) -> dict:
    return dict(
        type="OADPRoIHead",
        num_base=2,
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=head_cfg(prompt_path, "bbox"),
        object_head=head_cfg(prompt_path, "object"),
        block_head=head_cfg(prompt_path, "block"),
        train_cfg=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1,
            ),
            sampler=dict(type="RandomSampler", num=64, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False,
        ),
        test_cfg=dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300),
    )


def sample(seed: int):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    s = DetDataSample(metainfo={"img_shape": (128, 128), "ori_shape": (128, 128), "scale_factor": (1.0, 1.0)})
    s.gt_instances = InstanceData(
        bboxes=torch.tensor([[10.0, 10, 60, 60], [70, 20, 120, 90]]), labels=torch.tensor([0, 1])
    )
    s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    s.object_bboxes = torch.tensor([[12.0, 8, 58, 62], [5, 5, 30, 40], [60, 10, 125, 100]])
    s.clip_objects = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    s.block_bboxes = torch.tensor([[0.0, 0, 128, 128], [0, 0, 64, 64], [64, 64, 128, 128]])
    s.clip_blocks = F.normalize(torch.randn(3, 16, generator=g), dim=-1)
    s.block_labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.bool)
    return s


def proposals(seed: int):
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(40, 2, generator=g) * 90
    return InstanceData(
        bboxes=torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=g) * 30], 1), scores=torch.rand(40, generator=g)
    )


def features():
    g = torch.Generator().manual_seed(7)
    return tuple(torch.randn(2, 256, 128 // s, 128 // s, generator=g) for s in (4, 8, 16, 32, 64))


def test_losses_of_every_branch(prompt_path):
    head = build(roi_head_cfg(prompt_path))
    head.init_weights()
    head.train()
    losses = head.loss(features(), [proposals(1), proposals(2)], [sample(1), sample(2)])
    for key in (
        "loss_cls",
        "loss_bbox",
        "loss_clip_objects",
        "loss_block",
        "loss_clip_blocks",
        "loss_clip_block_relations",
    ):
        assert key in losses and torch.isfinite(losses[key]).all(), key
    # warm-up: first iteration weights are gain / 200 (objects 256/200), ASL 16/1000 and frozen
    assert head.schedules["object"].iteration == 2 and head.schedules["block_asl"].value == pytest.approx(0.016)
    total = sum(v for k, v in losses.items() if "loss" in k and torch.is_tensor(v))
    total.backward()
    assert head.object_head.fc_cls.linear.weight.grad.abs().sum() > 0  # the object head learns only by distillation
    assert head.block_head.fc_cls.linear.weight.grad.abs().sum() > 0


def test_inference_uses_the_ensemble(prompt_path):
    from pipeline.models.detector import losses as L

    head = build(roi_head_cfg(prompt_path))
    head.init_weights()
    head.eval()
    x = features()
    with torch.no_grad():
        rois = torch.cat([torch.zeros(40, 1), proposals(3).bboxes], 1)
        ensembled = head._bbox_forward(x, rois)["cls_score"]
        plain_bbox = head.bbox_head(head.bbox_roi_extractor(x[:4], rois))[0]
        plain_obj = head.object_head(head.bbox_roi_extractor(x[:4], rois))[0]
        torch.testing.assert_close(ensembled, L.ensemble_scores(plain_bbox, plain_obj, 2))
        results = head.predict(x, [proposals(3), proposals(4)], [sample(3), sample(4)], rescale=False)
    assert len(results) == 2 and (results[0].scores >= 0).all() and (results[0].scores <= 1).all()
    assert len(results[0].bboxes) <= 300 and set(results[0].labels.tolist()) <= {0, 1, 2}


@pytest.mark.parametrize(("lambdas", "head_name"), [((1.0, 1.0), "bbox_head"), ((0.0, 0.0), "object_head")])
def test_ensemble_exponents_pick_one_head(prompt_path, lambdas, head_name):
    head = build({**roi_head_cfg(prompt_path), "ensemble": {"lambda_base": lambdas[0], "lambda_novel": lambdas[1]}})
    head.init_weights()
    head.eval()
    x = features()
    with torch.no_grad():
        rois = torch.cat([torch.zeros(40, 1), proposals(3).bboxes], 1)
        scores = head._bbox_forward(x, rois)["cls_score"].softmax(-1)[:, :-1]
        logits = getattr(head, head_name)(head.bbox_roi_extractor(x[:4], rois))[0].float()
    if head_name == "object_head":
        logits[:, -1] = float("-inf")  # the ensemble ignores the object head's background
    torch.testing.assert_close(scores, logits.softmax(-1)[:, :-1], atol=1e-6, rtol=1e-5)


def test_ensemble_exponents_are_checked(prompt_path):
    with pytest.raises(ValueError, match="out of range: {'lambda_base': 1.5}"):
        build({**roi_head_cfg(prompt_path), "ensemble": {"lambda_base": 1.5}})
    with pytest.raises(ValueError, match="unknown: \\['lambda'\\]"):
        build({**roi_head_cfg(prompt_path), "ensemble": {"lambda": 0.5}})


@pytest.mark.parametrize("trunk_grad", [0.0, 0.5, 1.0])
def test_trunk_grad_scales_what_distillation_sends_to_the_features(prompt_path, trunk_grad):
    """The distillation branches' gradient into the shared features is multiplied by trunk_grad (0: they train
    their heads only); the detection losses' gradient is untouched."""
    grads = {}
    for scale in (1.0, trunk_grad):
        torch.manual_seed(0)  # the same weights and the same sampled RoIs for both heads
        head = build({**roi_head_cfg(prompt_path), "trunk_grad": scale})
        head.init_weights()
        head.train()
        x = tuple(f.clone().requires_grad_(True) for f in features())
        losses = head.loss(x, [proposals(1), proposals(2)], [sample(1), sample(2)])
        distill = losses["loss_clip_objects"] + losses["loss_clip_blocks"] + losses["loss_block"]
        distill.backward(retain_graph=True)
        grads[scale] = torch.cat([f.grad.flatten() for f in x[:4]]).clone()
        assert head.object_head.fc_cls.linear.weight.grad.abs().sum() > 0  # the heads still learn
        for f in x:
            f.grad = None
        losses["loss_cls"].backward()
        assert torch.cat([f.grad.flatten() for f in x[:4]]).abs().sum() > 0
    assert grads[1.0].abs().sum() > 0
    torch.testing.assert_close(grads[trunk_grad], grads[1.0] * trunk_grad, atol=1e-9, rtol=1e-5)


def test_trunk_grad_is_checked(prompt_path):
    with pytest.raises(ValueError, match="trunk_grad must be in \\[0, 1\\], got 2"):
        build({**roi_head_cfg(prompt_path), "trunk_grad": 2})
