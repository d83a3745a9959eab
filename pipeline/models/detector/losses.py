"""Distillation losses, weight schedules and labels of the pyramid (method sections 6.4 and 6.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["asymmetric_loss", "WarmupWeight", "object_l1", "global_mse_sum", "block_l1", "block_relation",
           "block_labels", "image_labels", "ensemble_scores"]  # fmt: skip


class WarmupWeight:
    """``gain * min(step / end, 1)`` with ``step`` starting at 1 and advanced by :meth:`step` once per iteration.

    ``frozen=True`` reproduces the reference's ASL weights, whose schedulers are never stepped: the weight stays
    at ``gain / end`` (0.002 global, 0.016 block).
    """

    def __init__(self, gain: float, end: int, frozen: bool = False) -> None:
        self.gain, self.end, self.frozen, self.iteration = gain, end, frozen, 1

    @property
    def value(self) -> float:
        return self.gain * min(self.iteration / self.end, 1.0)

    def step(self) -> None:
        if not self.frozen:
            self.iteration += 1

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])


def asymmetric_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Element-wise Asymmetric Loss (Ridnik et al.) on sigmoid probabilities, as in the reference.

    ``p_neg = min(1 - p + clip, 1)``; ``L = -[y log(max(p, eps)) + (1 - y) log(max(p_neg, eps))] * w`` with the
    focusing weight ``w = (1 - p) ** gamma_pos`` for positives and ``(1 - p_neg) ** gamma_neg`` for negatives,
    computed without gradient.

    Args:
        probs: ``[..., C]`` sigmoid probabilities.
        targets: same shape, 0/1.

    Returns:
        the element-wise loss, same shape (reduce it yourself; the reference takes the mean).
    """
    targets = targets.to(probs.dtype)
    p_neg = (1 - probs + clip).clamp(max=1) if clip > 0 else 1 - probs
    loss = targets * torch.log(probs.clamp(min=eps)) + (1 - targets) * torch.log(p_neg.clamp(min=eps))
    with torch.no_grad():
        weight = targets * (1 - probs) ** gamma_pos + (1 - targets) * (1 - p_neg) ** gamma_neg
    return -loss * weight


def object_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Object distillation: L1, mean over ``N x D``."""
    return F.l1_loss(student, teacher.to(student.dtype), reduction="mean")


def global_mse_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Global distillation: MSE with **sum** reduction over ``B x D`` (scales with images per GPU)."""
    return F.mse_loss(student, teacher.to(student.dtype), reduction="sum")


def block_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Block distillation: L1, mean."""
    return F.l1_loss(student, teacher.to(student.dtype), reduction="mean")


def block_relation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Block relation ("RKD"): MSE between the Gram matrices ``F F^T`` of student and teacher, mean over ``N^2``."""
    teacher = teacher.to(student.dtype)
    return F.mse_loss(student @ student.T, teacher @ teacher.T, reduction="mean")


def block_labels(blocks: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, num_classes: int,
                 gt_crowd: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """``[Nb, C]`` bool: a block gets class c when any non-crowd GT box of class c (label < ``num_classes``)
    overlaps it with positive area. Boxes xyxy in the same (original) coordinates."""
    out = torch.zeros(len(blocks), num_classes, dtype=torch.bool, device=blocks.device)
    keep = gt_labels < num_classes
    if gt_crowd is not None:
        keep &= ~gt_crowd.bool()
    gt_boxes, gt_labels = gt_boxes[keep], gt_labels[keep]
    if len(gt_boxes) == 0 or len(blocks) == 0:
        return out
    w = torch.minimum(blocks[:, None, 2], gt_boxes[None, :, 2]) - torch.maximum(
        blocks[:, None, 0], gt_boxes[None, :, 0]
    )
    h = torch.minimum(blocks[:, None, 3], gt_boxes[None, :, 3]) - torch.maximum(
        blocks[:, None, 1], gt_boxes[None, :, 1]
    )
    overlap = (w > 0) & (h > 0)  # [Nb, G]
    for g, label in enumerate(gt_labels.tolist()):
        out[:, label] |= overlap[:, g]
    return out


def image_labels(gt_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C]`` multi-hot of the classes present among ``gt_labels`` (the global head's target)."""
    out = torch.zeros(num_classes, dtype=torch.bool, device=gt_labels.device)
    out[gt_labels[gt_labels < num_classes]] = True
    return out


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    if scale == 1:
        return x
    return x * scale + x.detach() * (1 - scale)


def ensemble_scores(bbox_logits: torch.Tensor, object_logits: torch.Tensor, num_base: int,
                    lambda_base: float = 2 / 3, lambda_novel: float = 1 / 3) -> torch.Tensor:  # fmt: skip
    """The ViLD-style inference ensemble (method 6.7) -> ``[N, K + 1]`` log-scores.

    ``p_b = softmax(bbox_logits)`` over K classes + background; ``p_o = softmax(object_logits)`` with the background
    forced to -inf; ``score_c = p_b(c)^lambda_c * p_o(c)^(1 - lambda_c)`` with lambda 2/3 for base, 1/3 for novel
    classes; background = ``1 - sum_c score_c``. The log is returned, so that a later softmax gives the scores back
    exactly (they sum to 1).
    """
    num_classes = bbox_logits.shape[1] - 1
    p_b = bbox_logits.float().softmax(-1)
    obj = object_logits.float().clone()
    obj[:, -1] = float("-inf")
    p_o = obj.softmax(-1)
    lam = torch.full((num_classes,), lambda_novel, device=bbox_logits.device)
    lam[:num_base] = lambda_base
    scores = p_b[:, :num_classes] ** lam * p_o[:, :num_classes] ** (1 - lam)
    background = (1 - scores.sum(-1, keepdim=True)).clamp(min=0)
    return torch.cat([scores, background], -1).clamp(min=1e-12).log()
