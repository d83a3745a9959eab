"""``OADPRoIHead``: mmdet's StandardRoIHead plus the object and block branches of the pyramid (method 6.3-6.7).

Training adds, per batch: the object branch (RoIs = the stored OAKE object boxes, after the image's resize/flip;
student = the object head's normalised projection; L1 to the CLIP object embeddings, weight 256 warmed up over
200 iterations) and the block branch (RoIs = block boxes; block multi-label ASL on the logits without background,
weight 16/1000 never stepped by default as in the reference; L1 to the CLIP block embeddings, 128; Gram relation
loss, 8). Inference replaces the bbox head's class scores by the ViLD ensemble with the object head (lambda 2/3
base, 1/3 novel); mmdet's post-processing (score_thr, NMS, max detections) then runs unchanged.
"""

from __future__ import annotations

import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi

from pipeline.models.detector import losses as L


def head_cls_features(head, x: torch.Tensor) -> torch.Tensor:
    """The input of ``head.fc_cls`` for RoI features ``x`` (mmdet ``ConvFCBBoxHead.forward`` up to the classifier)."""
    for conv in head.shared_convs:
        x = conv(x)
    if head.num_shared_fcs > 0:
        if head.with_avg_pool:
            x = head.avg_pool(x)
        x = x.flatten(1)
        for fc in head.shared_fcs:
            x = head.relu(fc(x))
    for conv in head.cls_convs:
        x = conv(x)
    if x.dim() > 2:
        if head.with_avg_pool:
            x = head.avg_pool(x)
        x = x.flatten(1)
    for fc in head.cls_fcs:
        x = head.relu(fc(x))
    return x


def ensemble_exponents(ensemble: dict | None) -> dict[str, float]:
    """The inference ensemble's exponents, ``{"lambda_base", "lambda_novel"}`` (defaults 2/3, 1/3), checked."""
    out = {"lambda_base": 2 / 3, "lambda_novel": 1 / 3, **(ensemble or {})}
    unknown = set(out) - {"lambda_base", "lambda_novel"}
    bad = {k: v for k, v in out.items() if k not in unknown and not 0 <= float(v) <= 1}
    if unknown or bad:
        raise ValueError(
            f"OADPRoIHead ensemble: keys are lambda_base and lambda_novel, each in [0, 1] "
            f"(unknown: {sorted(unknown)}, out of range: {bad})"
        )
    return {k: float(v) for k, v in out.items()}


@MODELS.register_module()
class OADPRoIHead(StandardRoIHead):
    """Args beyond StandardRoIHead's:
    object_head, block_head: mmdet bbox-head configs (``with_reg=False``) with text-classifier predictors.
    num_base: base classes (ensemble exponents).
    weights: loss gains and warm-up lengths; ``asl_frozen`` keeps the ASL weight at gain / end (reference).
    ensemble: the inference exponents of the bbox head, ``{"lambda_base": 2/3, "lambda_novel": 1/3}`` (method 6.7);
        1 scores a class by the bbox head alone, 0 by the object head alone (to see which head carries it).
    trunk_grad: factor on the gradient that the object and block branches send back into the shared RoI features
        (backbone and FPN); 1 = the reference; 0 = those branches train their own heads only, and the trunk
        learns from detection alone (the CPU demo's setting, see ``configs/_base_/cpu_slim.py``).
    """

    def __init__(
        self,
        *args,
        object_head: dict | None = None,
        block_head: dict | None = None,
        num_base: int = 0,
        weights: dict | None = None,
        asl_frozen: bool = True,
        ensemble: dict | None = None,
        trunk_grad: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= trunk_grad <= 1:
            raise ValueError(f"OADPRoIHead trunk_grad must be in [0, 1], got {trunk_grad}")
        self.trunk_grad = float(trunk_grad)
        self.ensemble = ensemble_exponents(ensemble)
        self.object_head = MODELS.build(object_head) if object_head else None
        self.block_head = MODELS.build(block_head) if block_head else None
        self.num_base = num_base
        w = {
            "object": 256.0,
            "block": 128.0,
            "relation": 8.0,
            "block_asl": 16.0,
            "warmup": 200,
            "asl_end": 1000,
            **(weights or {}),
        }
        self.schedules = {
            "object": L.WarmupWeight(w["object"], w["warmup"]),
            "block": L.WarmupWeight(w["block"], w["warmup"]),
            "relation": L.WarmupWeight(w["relation"], w["warmup"]),
            "block_asl": L.WarmupWeight(w["block_asl"], w["asl_end"], frozen=asl_frozen),
        }

    def get_extra_state(self) -> dict:
        """The warm-up counters travel in the state dict, so that a resumed run continues its weight schedules."""
        return {name: w.state_dict() for name, w in self.schedules.items()}

    def set_extra_state(self, state: dict) -> None:
        for name, value in state.items():
            self.schedules[name].load_state_dict(value)

    def _branch(self, head, x, boxes, trunk_grad: float = 1.0):
        rois = bbox2roi(boxes)
        feats = L.scale_grad(self.bbox_roi_extractor(x[: self.bbox_roi_extractor.num_inputs], rois), trunk_grad)
        cls_x = head_cls_features(head, feats)
        return head.fc_cls(cls_x), head.fc_cls.linear(cls_x)

    def loss(self, x, rpn_results_list, batch_data_samples) -> dict:
        losses = super().loss(x, rpn_results_list, batch_data_samples)
        if self.object_head is not None:
            boxes = [s.object_bboxes for s in batch_data_samples]
            if sum(len(b) for b in boxes):
                _, student = self._branch(self.object_head, x, boxes, self.trunk_grad)
                teacher = torch.cat([s.clip_objects for s in batch_data_samples])
                losses["loss_clip_objects"] = L.object_l1(student, teacher) * self.schedules["object"].value
        if self.block_head is not None:
            boxes = [s.block_bboxes for s in batch_data_samples]
            logits, student = self._branch(self.block_head, x, boxes, self.trunk_grad)
            teacher = torch.cat([s.clip_blocks for s in batch_data_samples])
            labels = torch.cat([s.block_labels for s in batch_data_samples]).float()
            asl = L.asymmetric_loss(torch.sigmoid(logits[:, :-1]), labels).mean()
            losses["loss_block"] = asl * self.schedules["block_asl"].value
            losses["loss_clip_blocks"] = L.block_l1(student, teacher) * self.schedules["block"].value
            losses["loss_clip_block_relations"] = L.block_relation(student, teacher) * self.schedules["relation"].value
        for schedule in self.schedules.values():
            schedule.step()
        return losses

    def _bbox_forward(self, x, rois) -> dict:
        results = super()._bbox_forward(x, rois)
        if not self.training and self.object_head is not None:
            object_logits = self.object_head(results["bbox_feats"])[0]
            results["cls_score"] = L.ensemble_scores(
                results["cls_score"], object_logits, self.num_base, **self.ensemble
            )
        return results
