"""Losses shared by the learned prompt and the detector (method section 6.5)."""

from __future__ import annotations

import torch


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
