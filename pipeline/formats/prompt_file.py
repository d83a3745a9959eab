"""Prompt files ``results/prompts/{name}.pth``: class embeddings picked by class name.

A prompt file is a dict ``names: list[str]`` (K distinct class names), ``embeddings: float32 [K, D]`` (row ``i``
belongs to ``names[i]``), ``meta: dict[str, str]`` (how it was made; ``meta["dry_run"] == "True"``: by a dry
run, shrunk ensembles, not for results) and, for learned prompts, the floats ``scaler`` and ``bias`` and, when
known, ``context: float32 [n_ctx, W]`` (the learned context token embeddings that embed any other name the same
way). Only tensors, strings and floats: it loads with ``torch.load(path, weights_only=True)``.
Readers pick rows by name with :func:`select`, never by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import atomic

if TYPE_CHECKING:
    import torch


class PromptError(ValueError):
    """A prompt file or input that cannot be used (the message names the file and the names)."""


def save(
    path: str | Path,
    names: Sequence[str],
    embeddings: torch.Tensor,
    meta: Mapping[str, str],
    scaler: float | None = None,
    bias: float | None = None,
    context: torch.Tensor | None = None,
) -> None:
    """Write a prompt file atomically (tensors, strings and floats only: ``weights_only`` loadable)."""
    import torch

    embeddings = embeddings.detach().float().cpu().contiguous()
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise PromptError(f"{path}: {len(names)} names but embeddings of shape {tuple(embeddings.shape)}")
    if len(set(names)) != len(names):
        raise PromptError(f"{path}: repeated names")
    if not torch.isfinite(embeddings).all():
        raise PromptError(f"{path}: embeddings are not finite")
    obj: dict = {"names": list(names), "embeddings": embeddings, "meta": {k: str(v) for k, v in meta.items()}}
    if scaler is not None:
        obj["scaler"], obj["bias"] = float(scaler), float(bias)
    if context is not None:
        obj["context"] = context.detach().float().cpu().contiguous()
    with atomic.atomic_path(path, suffix=".pth") as tmp:
        torch.save(obj, tmp)


def load(path: str | Path) -> dict:
    """Load a prompt file safely (``weights_only=True``) and check its structure."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise PromptError(f"{path}: not a readable prompt file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or "names" not in obj or "embeddings" not in obj:
        raise PromptError(f"{path}: expected a dict with 'names' and 'embeddings'")
    if len(obj["names"]) != obj["embeddings"].shape[0]:
        raise PromptError(f"{path}: {len(obj['names'])} names for {obj['embeddings'].shape[0]} rows")
    return obj


def select(prompts: Mapping, names: Sequence[str], source: str = "prompt file") -> torch.Tensor:
    """Rows of ``prompts`` for ``names``, in that order: ``[len(names), D]``. Missing names are an error."""
    index = {n: i for i, n in enumerate(prompts["names"])}
    missing = [n for n in names if n not in index]
    if missing:
        raise PromptError(f"{source}: names missing: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    return prompts["embeddings"][[index[n] for n in names]]
