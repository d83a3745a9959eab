"""The teacher's training loop: symmetric image-text InfoNCE, AdamW, warm-up then cosine decay, in a budget.

:func:`train` trains a model from :func:`pipeline.teacher.model.create_model` in place on
:class:`~pipeline.teacher.data.CaptionBatches` until ``opts.steps`` or ``opts.seconds`` runs out and returns
its figures (steps, seconds, samples, loss curve, logit scale, trained token rows). :func:`contrastive_loss`
takes unit-norm ``image [B, D]``, ``text [B, D]``, ``categories [B]``; same-class pairs are all positives.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.core.progress import Progress
from pipeline.teacher.data import CaptionBatches
from pipeline.teacher.model import TokenRows, caption_token_ids, encode_image_downsampled
from pipeline.teacher.options import TeacherError, TeacherOptions

log = logging.getLogger(__name__)

MAX_LOGIT_SCALE = 100.0


def contrastive_loss(
    image: torch.Tensor, text_emb: torch.Tensor, categories: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised ``image [B, D]`` and ``text_emb [B, D]``; pairs of the same class are all
    positives (target mass spread evenly over them)."""
    logits = logit_scale.exp() * image @ text_emb.T
    same = (categories[:, None] == categories[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)  # symmetric: a class's count is the same by row and by column
    i2t = -(targets * logits.log_softmax(1)).sum(1).mean()
    t2i = -(targets * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def _optimizer(model, opts: TeacherOptions, extra: Sequence[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    decay, rest = [], list(extra)  # extra: token rows (embeddings: no weight decay)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name or "embedding" in name
        (rest if no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr(opts: TeacherOptions, progress: float) -> float:
    warm = min(1.0, progress / opts.warmup) if opts.warmup > 0 else 1.0
    return opts.lr * warm * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(model, opts: TeacherOptions) -> dict:
    """Train ``model`` in place within the budget; returns training figures (losses, steps, seconds)."""
    from pipeline.models.clip import text

    torch.set_num_threads(max(1, opts.threads - opts.workers))
    model.train()
    model.token_embedding.weight.requires_grad_(False)
    rows = TokenRows(model.token_embedding, caption_token_ids(opts)) if opts.token_rows == "caption" else None
    optimizer = _optimizer(model, opts, [rows.rows] if rows is not None else [])
    loader = DataLoader(
        CaptionBatches(opts),
        batch_size=None,
        num_workers=opts.workers,
        prefetch_factor=4 if opts.workers else None,
    )
    losses: list[float] = []
    total = opts.steps if opts.steps is not None else int(math.ceil(opts.seconds))
    bar = Progress(total, "teacher", unit="step" if opts.steps is not None else "s", logger=log)
    start = time.perf_counter()
    progress, shown = 0.0, 0
    for step, (images, tokens, categories) in enumerate(loader):
        elapsed = time.perf_counter() - start
        progress = max(
            step / opts.steps if opts.steps is not None else 0.0,
            elapsed / opts.seconds if opts.seconds is not None else 0.0,
        )
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr(opts, progress)
        image_emb = F.normalize(encode_image_downsampled(model.visual, images, opts.downsample), dim=-1)
        text_emb = text.encode_tokens(model, tokens, rows.embed(tokens) if rows is not None else None)
        loss = contrastive_loss(image_emb, text_emb, categories, model.logit_scale)
        if not torch.isfinite(loss):
            raise TeacherError(f"teacher: loss is {loss.item()} at step {step} (lower --lr)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        losses.append(float(loss.item()))
        now = step + 1 if opts.steps is not None else int(time.perf_counter() - start)
        bar.update(max(0, min(now, total) - shown))
        shown = max(shown, min(now, total))
        if (step + 1) % 50 == 0:
            bar.set_postfix(
                step=step + 1,
                loss=f"{np.mean(losses[-50:]):.3f}",
                lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                scale=f"{model.logit_scale.exp().item():.1f}",
            )
            log.debug("step %d: loss %.4f", step + 1, np.mean(losses[-50:]))
    bar.close()
    seconds = time.perf_counter() - start
    if rows is not None:
        rows.write_back()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    window = max(1, min(50, len(losses) // 10))
    figures = {
        "steps": len(losses),
        "seconds": round(seconds, 1),
        "samples": len(losses) * opts.batch_size,
        "rendered_crops": -(-len(losses) // opts.repeat) * opts.batch_size,
        "loss_first": float(np.mean(losses[:window])) if losses else None,
        "loss_last": float(np.mean(losses[-window:])) if losses else None,
        "loss_curve": [round(float(np.mean(losses[i : i + window])), 4) for i in range(0, len(losses), window)],
        "logit_scale": round(float(model.logit_scale.exp()), 3),
        "trained_token_rows": int(len(rows.ids)) if rows is not None else 0,
    }
    log.info(
        "teacher: %d steps (%d crops) in %.0f s, loss %.3f -> %.3f",
        figures["steps"],
        figures["samples"],
        seconds,
        figures["loss_first"] or float("nan"),
        figures["loss_last"] or float("nan"),
    )
    return figures
