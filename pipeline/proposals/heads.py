"""An OLN-style RPN head for mmdet 3: localisation quality instead of objectness classification.

OLN (Kim et al., "Learning Open-World Object Proposals without Learning to Classify", 2022), whose proposals
the reference used, learns *how well* an anchor is placed on some object rather than *whether* it shows one of the
training classes, which generalises better to unseen (novel) classes. Here the RPN's score branch regresses the
centerness of each positive anchor's centre inside its assigned box (L1 on the sigmoid output; negatives carry no
quality loss) and proposals are ranked by that predicted quality. Box regression is unchanged. This is the
named option ``--arch oln`` of ``pipeline.proposals``; the full OLN (IoU-loss box branch, OLN-Box RoI stage) is not
reproduced.
"""

from __future__ import annotations

import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.models.task_modules.prior_generators import anchor_inside_flags
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor


def centerness(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``points [N, 2]`` in ``boxes [N, 4]`` (0 outside)."""
    left, top = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    right, bottom = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr = torch.stack([left, right], 1)
    tb = torch.stack([top, bottom], 1)
    inside = (lr.min(1).values > 0) & (tb.min(1).values > 0)
    ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-6)) * (
        tb.min(1).values / tb.max(1).values.clamp(min=1e-6)
    )
    return torch.where(inside, ratio.clamp(min=0).sqrt(), torch.zeros_like(ratio))


@MODELS.register_module()
class OLNStyleRPNHead(RPNHead):
    """RPN head whose score is a regressed localisation quality (centerness) of the anchor."""

    def _get_targets_single(
        self, flat_anchors, valid_flags, gt_instances, img_meta, gt_instances_ignore=None, unmap_outputs=True
    ):
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds, sampling = super()._get_targets_single(
            flat_anchors, valid_flags, gt_instances, img_meta, gt_instances_ignore, unmap_outputs
        )
        inside = anchor_inside_flags(
            flat_anchors, valid_flags, img_meta["img_shape"][:2], self.train_cfg["allowed_border"]
        )
        index = inside.nonzero().squeeze(1)[pos_inds] if unmap_outputs else pos_inds
        quality = label_weights.new_zeros(label_weights.shape)
        weights = label_weights.new_zeros(label_weights.shape)
        if len(pos_inds):
            priors = get_box_tensor(sampling.pos_priors)
            centres = (priors[:, :2] + priors[:, 2:]) / 2
            quality[index] = centerness(centres, get_box_tensor(sampling.pos_gt_bboxes))
            weights[index] = 1.0
        return quality, weights, bbox_targets, bbox_weights, pos_inds, neg_inds, sampling

    def loss_by_feat_single(
        self, cls_score, bbox_pred, anchors, labels, label_weights, bbox_targets, bbox_weights, avg_factor
    ):
        quality = labels.reshape(-1).float()
        weights = label_weights.reshape(-1)
        pred = cls_score.permute(0, 2, 3, 1).reshape(-1).sigmoid()
        loss_quality = ((pred - quality).abs() * weights).sum() / weights.sum().clamp(min=1.0)
        dummy = labels.new_zeros(labels.shape, dtype=torch.long)
        _, loss_bbox = super().loss_by_feat_single(
            cls_score,
            bbox_pred,
            anchors,
            dummy,
            torch.zeros_like(label_weights),
            bbox_targets,
            bbox_weights,
            avg_factor,
        )
        return loss_quality, loss_bbox
