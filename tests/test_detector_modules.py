"""The pyramid's parts inside real mmdet 3 heads: shapes, novel masking, losses, the global head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.formats import prompt_file as prompt_files

NAMES = ["a", "b", "c"]  # a, b base; c novel


@pytest.fixture(scope="module")
def prompt_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "vild.pth"
    emb = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    prompt_files.save(path, ["c", "x", "a", "b"], emb, {"kind": "test"}, scaler=20.0, bias=4.0)
    return str(path)


def build(cfg: dict):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    import pipeline.models.detector.modules  # noqa: F401  (registers the predictors)
    import pipeline.models.detector.roi_head  # noqa: F401  (registers OADPRoIHead)

    register_all_modules()
    return MODELS.build(ConfigDict(cfg))


def head_cfg(prompt_path: str, kind: str = "bbox") -> dict:
    predictor = dict(
        type="ViLDTextClassifier",
        prompts=prompt_path,
        names=NAMES,
        num_base=2,
        tau_train=0.01,
        tau_val=0.007,
        background_enabled=kind != "object",
    )
    base = dict(
        in_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=3,
        cls_predictor_cfg=predictor,
        reg_class_agnostic=True,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    )
    if kind == "block":
        return dict(base, type="Shared2FCBBoxHead", with_reg=False)
    return dict(base, type="Shared4Conv1FCBBoxHead", conv_out_channels=256, with_reg=kind == "bbox")


def test_bbox_head_scores_and_masks_novel_in_training(prompt_path):
    head = build(head_cfg(prompt_path))
    rois = torch.randn(6, 256, 7, 7)
    head.train()
    cls, reg = head(rois)
    assert cls.shape == (6, 4) and reg.shape == (6, 4)  # 3 classes + learned background; class-agnostic boxes
    assert torch.isinf(cls[:, 2]).all() and torch.isfinite(cls[:, [0, 1, 3]]).all()
    labels = torch.tensor([0, 1, 3, 3, 0, 1])  # base classes and background (3)
    loss = head.loss(
        cls,
        reg,
        torch.cat([torch.zeros(6, 1), torch.rand(6, 4) * 50], 1),
        labels,
        torch.ones(6),
        torch.zeros(6, 4),
        torch.zeros(6, 4),
    )
    assert torch.isfinite(loss["loss_cls"]) and loss["loss_cls"] > 0
    loss["loss_cls"].backward()
    assert head.fc_cls.background.grad is not None
    head.eval()
    assert torch.isfinite(head(rois)[0]).all()


def test_object_and_block_heads(prompt_path):
    obj = build(head_cfg(prompt_path, "object")).eval()
    cls, reg = obj(torch.randn(3, 256, 7, 7))
    assert reg is None and torch.isinf(cls[:, -1]).all()  # the object head's background is never used
    block = build(head_cfg(prompt_path, "block")).train()
    cls, reg = block(torch.randn(5, 256, 7, 7))
    assert reg is None and cls.shape == (5, 4) and torch.isinf(cls[:, 2]).all()


def test_global_head_pools_the_last_level(prompt_path):
    head = build(
        dict(
            type="GlobalHead",
            in_channels=256,
            classifier=dict(type="ScaledTextClassifier", prompts=prompt_path, names=NAMES, num_base=2),
        )
    )
    head.eval()
    feature = torch.randn(2, 256, 5, 7)
    logits, student = head(feature)
    assert logits.shape == (2, 3) and student.shape == (2, 16)  # no background column
    torch.testing.assert_close(student, head.classifier.linear(feature.mean(dim=(2, 3))))
    torch.testing.assert_close(logits, head.classifier.cosine(feature.mean(dim=(2, 3))) * 20.0 - 4.0)


def test_scaled_classifier_inside_an_initialised_block_head(prompt_path):
    cfg = head_cfg(prompt_path, "block")
    cfg["cls_predictor_cfg"] = dict(type="ScaledTextClassifier", prompts=prompt_path, names=NAMES, num_base=2)
    head = build(cfg)
    head.init_weights()  # mmengine's Normal init on fc_cls must leave the file's scaler / bias alone
    assert (head.fc_cls.logit_scale, head.fc_cls.logit_bias) == (20.0, 4.0)
    assert head(torch.randn(2, 256, 7, 7))[0].shape == (2, 4)


def test_a_head_asking_for_the_wrong_width_is_refused(prompt_path):
    cfg = head_cfg(prompt_path)
    cfg["num_classes"] = 5
    with pytest.raises(ValueError, match="asks for 6 outputs; 3 classes \\+ background give 4"):
        build(cfg)


@pytest.mark.parametrize(("init_std", "expected_std"), [(None, 0.01), (1e-3, 1e-3)])
def test_classifier_init_std_overrides_the_heads_init(prompt_path, init_std, expected_std):
    """mmdet's head init draws fc_cls from N(0, 0.01); init_std (applied after it) replaces that, bias zero."""
    cfg = head_cfg(prompt_path, "block")
    cfg["cls_predictor_cfg"] = dict(cfg["cls_predictor_cfg"], init_std=init_std)
    torch.manual_seed(0)
    head = build(cfg)
    head.fc_cls.linear.bias.data.fill_(5.0)
    head.init_weights()
    weight = head.fc_cls.linear.weight  # 16 x 1024 draws
    assert weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert head.fc_cls.linear.bias.abs().max().item() == 0


def test_classifier_init_std_is_checked(prompt_path):
    cfg = head_cfg(prompt_path, "block")
    cfg["cls_predictor_cfg"] = dict(cfg["cls_predictor_cfg"], init_std=0.0)
    with pytest.raises(ValueError, match="init_std must be > 0, got 0.0"):
        build(cfg)
