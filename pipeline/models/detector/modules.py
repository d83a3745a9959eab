"""mmdet 3 registrations of the pyramid's parts (method sections 6.2 and 6.3).

* ``ViLDTextClassifier`` / ``ScaledTextClassifier``: the text-embedding classifiers as ``cls_predictor_cfg`` of
  mmdet bbox heads (``ConvFCBBoxHead`` builds them with ``in_features`` / ``out_features``); ``prompts`` is a prompt
  file path (loaded with ``weights_only=True``) or an already loaded dict.
* ``GlobalHead``: the global branch: mean-pool the last FPN level over space, then a classifier without background.

The bbox, object and block heads are mmdet's ``Shared4Conv1FCBBoxHead`` / ``Shared2FCBBoxHead`` with these
predictors (object and block heads with ``with_reg=False``; the object head's background ``background_enabled=
False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from mmdet.registry import MODELS
from torch import nn

from pipeline.formats import prompt_file
from pipeline.models.detector.classifiers import ScaledClassifier, TextEmbeddingClassifier, ViLDClassifier


def _load(prompts: str | Path | Mapping) -> Mapping:
    return prompt_file.load(prompts) if isinstance(prompts, str | Path) else prompts


def _check_width(clf: TextEmbeddingClassifier, out_features: int | None) -> None:
    expected = clf.num_classes + int(clf.background is not None)
    if out_features is not None and out_features != expected:
        raise ValueError(
            f"the head asks for {out_features} outputs; {clf.num_classes} classes"
            f"{' + background' if clf.background is not None else ''} give {expected}"
        )


@MODELS.register_module()
class ViLDTextClassifier(ViLDClassifier):
    """``score / tau`` classifier for mmdet heads (see :class:`pipeline.models.detector.classifiers.ViLDClassifier`)."""

    def __init__(
        self,
        in_features: int,
        prompts,
        names: Sequence[str],
        num_base: int,
        out_features: int | None = None,
        background: bool = True,
        background_enabled: bool = True,
        tau_train: float = 0.007,
        tau_val: float = 0.01,
        init_std: float | None = None,
    ) -> None:
        super().__init__(
            in_features,
            _load(prompts),
            names,
            num_base,
            background=background,
            background_enabled=background_enabled,
            tau_train=tau_train,
            tau_val=tau_val,
            init_std=init_std,
        )
        _check_width(self, out_features)


@MODELS.register_module()
class ScaledTextClassifier(ScaledClassifier):
    """``score * scaler - bias`` classifier for mmdet heads (the ``ml`` prompt's scaler and bias)."""

    def __init__(
        self,
        in_features: int,
        prompts,
        names: Sequence[str],
        num_base: int,
        out_features: int | None = None,
        background: bool = True,
        background_enabled: bool = True,
        init_std: float | None = None,
    ) -> None:
        super().__init__(
            in_features,
            _load(prompts),
            names,
            num_base,
            background=background,
            background_enabled=background_enabled,
            init_std=init_std,
        )
        _check_width(self, out_features)


@MODELS.register_module()
class GlobalHead(nn.Module):
    """Mean-pooled last FPN level -> text classifier over every class (no background).

    ``forward(feature [B, C, H, W])`` returns ``(logits [B, K], student [B, D])``: the student is the normalised
    projection distilled towards the CLIP global embedding.
    """

    def __init__(self, in_channels: int, classifier: dict) -> None:
        super().__init__()
        cfg = {**classifier, "in_features": in_channels, "background": False}
        self.classifier = MODELS.build(cfg)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = feature.mean(dim=(2, 3))
        return self.classifier(pooled), self.classifier.linear(pooled)
