"""The OADP detector (a Faster R-CNN with the pyramid's global branch) and the data packer for CLIP features."""

from __future__ import annotations

import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.models.detectors import TwoStageDetector
from mmdet.registry import MODELS, TRANSFORMS

from pipeline.models.detector import losses as L

CLIP_KEYS = ("clip_global", "clip_blocks", "block_bboxes", "block_labels", "clip_objects", "object_bboxes")


@TRANSFORMS.register_module()
class PackOADPInputs(PackDetInputs):
    """``PackDetInputs`` that also carries the CLIP features of ``LoadCLIPFeatures`` into the data sample."""

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        for key in CLIP_KEYS:
            if key in results:
                setattr(packed["data_samples"], key, torch.as_tensor(results[key]))
        return packed


@MODELS.register_module()
class OADP(TwoStageDetector):
    """Faster R-CNN + (optionally) the global head on the last FPN level.

    Args:
        global_head: a ``GlobalHead`` config; its loss is ASL vs the image's base labels (gain 4 over 2000
            iterations, frozen at 0.002 by default, as in the reference) plus MSE-sum to the CLIP global embedding
            (0.5, warm-up ``warmup`` iterations, 200 in the reference).
        trunk_grad: factor on the global branch's gradient into the backbone and FPN (1 = the reference; as
            ``OADPRoIHead.trunk_grad`` for the object and block branches).
    """

    def __init__(
        self,
        *args,
        global_head: dict | None = None,
        asl_frozen: bool = True,
        warmup: int = 200,
        trunk_grad: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= trunk_grad <= 1:
            raise ValueError(f"OADP trunk_grad must be in [0, 1], got {trunk_grad}")
        self.trunk_grad = float(trunk_grad)
        self.global_head = MODELS.build(global_head) if global_head else None
        self.global_weights = {"asl": L.WarmupWeight(4.0, 2000, frozen=asl_frozen), "mse": L.WarmupWeight(0.5, warmup)}
        self._features = None

    def get_extra_state(self) -> dict:
        """The global branch's warm-up counters (saved with the weights; a resumed run continues them)."""
        return {name: w.state_dict() for name, w in self.global_weights.items()}

    def set_extra_state(self, state: dict) -> None:
        for name, value in state.items():
            self.global_weights[name].load_state_dict(value)

    def extract_feat(self, batch_inputs):
        x = super().extract_feat(batch_inputs)
        self._features = x if self.training else None
        return x

    def loss(self, batch_inputs, batch_data_samples) -> dict:
        losses = super().loss(batch_inputs, batch_data_samples)
        if self.global_head is not None:
            logits, student = self.global_head(L.scale_grad(self._features[-1], self.trunk_grad))
            num = logits.shape[1]
            labels = torch.stack([L.image_labels(s.gt_instances.labels, num) for s in batch_data_samples]).float()
            teacher = torch.stack([s.clip_global for s in batch_data_samples])
            losses["loss_global"] = (
                L.asymmetric_loss(torch.sigmoid(logits), labels).mean() * self.global_weights["asl"].value
            )
            losses["loss_clip_global"] = L.global_mse_sum(student, teacher) * self.global_weights["mse"].value
            for w in self.global_weights.values():
                w.step()
        self._features = None
        return losses
