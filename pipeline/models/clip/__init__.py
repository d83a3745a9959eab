"""CLIP for OADP-Flow: offline loading (:mod:`.loading`), tiny named configs (:mod:`.configs`), the ViT variants
OAKE needs (:mod:`.vision`), batched text encoding (:mod:`.text`) and preprocessing (:mod:`.preprocess`)."""

from pipeline.models.clip.loading import RANDOM, CLIPLoadError, LoadedClip, create_architecture, load_clip

__all__ = ["RANDOM", "CLIPLoadError", "LoadedClip", "create_architecture", "load_clip"]
