"""CLIP for OADP-Flow: offline loading (:mod:`.loading`), tiny named configs (:mod:`.configs`), the ViT variants
OAKE needs (:mod:`.vision`), batched text encoding (:mod:`.text`) and preprocessing (:mod:`.preprocess`).

The loading names are imported on first use (``from pipeline.models.clip import load_clip``), so that importing a
light submodule (:mod:`.geometry`) or building a stage's parser does not import torch and open_clip."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.models.clip.loading import RANDOM, CLIPLoadError, LoadedClip, create_architecture, load_clip

__all__ = ["RANDOM", "CLIPLoadError", "LoadedClip", "create_architecture", "load_clip"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("pipeline.models.clip.loading"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
