"""``final.pth``, a detector as one file: written by ``pipeline.train fit`` and ``pipeline.released detector``
(:func:`write_checkpoint`), read by :func:`read_checkpoint` (``pipeline.detect``,
:func:`pipeline.models.detector.inference.load_detector`).

``{"state_dict": model.state_dict(), "meta": {...}}``; ``meta`` holds ``experiment``, ``argv``, ``config`` (the
resolved mmengine config as a dict), ``prompts`` (:func:`stored_prompts`) and either ``environment`` (a trained
detector: :func:`pipeline.core.environment.environment`) or ``imported`` (a converted released checkpoint: its
file, hash and metadata). Tensors and plain values only: ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.core import atomic


def stored_prompts(cfg) -> dict[str, dict]:
    """The prompt files the config's classifiers read, by path: ``{path: {names, embeddings[, scaler, bias, context,
    meta]}}`` (``meta``: how the file was made, its CLIP included; ``pipeline.detect`` embeds a new vocabulary the
    same way).

    The classifiers' text embeddings are non-persistent buffers (not in the state dict); ``final.pth`` carries
    them here, so that a detector loads with the classifier it was trained with, from any working directory and
    after the prompt files were rebuilt."""
    from pipeline.formats import prompt_file
    from pipeline.models.detector.config import classifier_nodes

    paths = sorted({str(d["prompts"]) for d in classifier_nodes(cfg)})
    out = {}
    for path in paths:
        p = prompt_file.load(path)
        out[path] = {k: p[k] for k in ("names", "embeddings", "scaler", "bias", "context", "meta") if k in p}
    return out


def write_checkpoint(path: str | Path, state_dict: Mapping, meta: Mapping) -> None:
    """Write ``final.pth`` atomically: ``{"state_dict": state_dict, "meta": meta}``."""
    import torch

    with atomic.atomic_path(path, suffix=".pth") as tmp:
        torch.save({"state_dict": state_dict, "meta": dict(meta)}, tmp)


def read_checkpoint(checkpoint: str | Path) -> dict:
    """``final.pth`` loaded with ``weights_only=True``; an error names the file when it has no ``meta.config``."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "config" not in ckpt.get("meta", {}):
        raise ValueError(f"{checkpoint}: not a final.pth of pipeline.train (no meta.config)")
    return ckpt
