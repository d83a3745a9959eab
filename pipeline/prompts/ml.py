"""The learned multi-label prompt ``ml`` (method section 3.3; the reference's ``ml_coco.pth`` recipe).

CoOp-style: 4 learnable context token embeddings, initialised from "a photo of a", inserted right after [SOT];
class text = name with ``_`` -> space plus "."; the CLIP text tower is frozen; the feature is read at [EOT],
projected and L2-normalised. Learnable ``scaler`` (init 20) and ``bias`` (init 4): logits = (image . text) *
scaler - bias. Images are the OAKE globals (L2-normalised CLIP [CLS]); labels = base classes present in each
training image; Asymmetric Loss (gamma- 4, gamma+ 0, clip 0.05, weight 640); Adam lr 5e-2, weight decay 1e-3,
4 epochs, batch 16. The output holds every class's text embedding plus ``scaler``, ``bias`` and the learned
``context`` (so that other names can be embedded with it: ``pipeline.models.clip.text.context_embeddings``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.core.progress import Progress
from pipeline.models.clip import text
from pipeline.models.detector.losses import asymmetric_loss

log = logging.getLogger(__name__)

CONTEXT_INIT = "a photo of a"


@dataclass(frozen=True)
class MLOptions:
    """Training recipe (defaults = the reference's mldec configuration)."""

    epochs: int = 4
    batch_size: int = 16
    lr: float = 5e-2
    weight_decay: float = 1e-3
    loss_weight: float = 640.0
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05
    scaler_init: float = 20.0
    bias_init: float = 4.0
    seed: int = 3407


class PromptLearner(nn.Module):
    """Context tokens + scaler + bias on a frozen CLIP text tower."""

    def __init__(self, clip_model, names: Sequence[str], opts: MLOptions) -> None:
        super().__init__()
        self.clip = clip_model
        init = text.tokenize([CONTEXT_INIT])[0]
        n_ctx = int((init != 0).sum()) - 2  # without [SOT] and [EOT]
        device = clip_model.token_embedding.weight.device
        with torch.no_grad():
            ctx = clip_model.token_embedding(init[1 : 1 + n_ctx].to(device)).clone()
        self.ctx = nn.Parameter(ctx.float())
        self.n_ctx = n_ctx
        self.register_buffer("tokens", text.context_tokens(names, n_ctx).to(device), persistent=False)
        self.scaler = nn.Parameter(torch.tensor(opts.scaler_init, device=device))
        self.bias = nn.Parameter(torch.tensor(opts.bias_init, device=device))

    def text_embeddings(self) -> torch.Tensor:
        """``[K, D]`` L2-normalised class embeddings with the current context."""
        return text.encode_with_context(self.clip, self.tokens, self.ctx)

    def forward(self, images: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.text_embeddings()
        if rows is not None:
            emb = emb[rows]
        return images @ emb.T * self.scaler - self.bias


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: mean of the precision at each positive, ranks by descending score (sklearn's
    ``average_precision_score`` without interpolation). NaN when the class has no positive."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(bool)
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def train(
    clip_model, names: Sequence[str], base: Sequence[str], images: torch.Tensor, labels: torch.Tensor, opts: MLOptions
) -> tuple[PromptLearner, list[float]]:
    """Fit the prompt on ``images [N, D]`` with base-class labels ``labels [N, len(base)]``; returns the learner
    and the mean loss of each epoch."""
    torch.manual_seed(opts.seed)
    learner = PromptLearner(clip_model, names, opts)
    device = learner.ctx.device
    base_rows = torch.tensor([list(names).index(n) for n in base], device=device)
    params = [learner.ctx, learner.scaler, learner.bias]
    optim = torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay)
    images, labels = images.float().to(device), labels.float().to(device)
    history = []
    gen = torch.Generator().manual_seed(opts.seed)
    steps = opts.epochs * -(-len(images) // opts.batch_size)
    bar = Progress(steps, f"ml prompt: {opts.epochs} epochs of {len(images)} images", unit="step", logger=log)
    for epoch in range(opts.epochs):
        order = torch.randperm(len(images), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(images), opts.batch_size):
            idx = order[i : i + opts.batch_size].to(device)
            logits = learner(images[idx], base_rows)
            loss = (
                asymmetric_loss(torch.sigmoid(logits), labels[idx], opts.gamma_neg, opts.gamma_pos, opts.clip).mean()
                * opts.loss_weight
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
            bar.update()
        history.append(total / max(count, 1))
        log.info(
            "ml prompt epoch %d/%d: loss %.4f, scaler %.3f, bias %.3f",
            epoch + 1,
            opts.epochs,
            history[-1],
            float(learner.scaler.detach()),
            float(learner.bias.detach()),
        )
    bar.close()
    return learner, history


@torch.no_grad()
def mean_ap(
    learner: PromptLearner, names: Sequence[str], classes: Sequence[str], images: torch.Tensor, labels: torch.Tensor
) -> float:
    """Mean AP over ``classes`` (columns of ``labels``) with classes that have a positive; NaN if none."""
    rows = torch.tensor([list(names).index(n) for n in classes], device=learner.ctx.device)
    scores = learner(images.float().to(learner.ctx.device), rows).cpu().numpy()
    aps = [average_precision(scores[:, j], labels[:, j].numpy()) for j in range(len(classes))]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def image_labels(annotations: dict, globals_readers, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``[N, D]`` global embeddings and ``[N, num_classes]`` multi-hot labels (category ids ``< num_classes``, the
    remapped base-first ids) of the images that have at least one such label and a globals row."""
    labels: dict[int, set[int]] = {}
    for a in annotations["annotations"]:
        if a["category_id"] < num_classes:
            labels.setdefault(a["image_id"], set()).add(a["category_id"])
    feats, rows, ids = [], [], []
    for image_id in sorted(labels):
        reader = next((r for r in globals_readers if image_id in r), None)
        if reader is None:
            continue
        feats.append(torch.from_numpy(reader.get(image_id)["embeddings"][0]))
        row = torch.zeros(num_classes)
        row[sorted(labels[image_id])] = 1
        rows.append(row)
        ids.append(image_id)
    if not ids:
        raise ValueError("no labelled image has a globals row: are the globals shards from this dataset?")
    return torch.stack(feats), torch.stack(rows), ids
