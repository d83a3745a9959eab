"""Text-embedding classifiers (method section 6.2).

``NormalizedLinear``: a linear layer to the embedding width followed by L2 normalisation. The class embeddings are
rows of a prompt file picked by name (a non-persistent buffer: not saved in checkpoints). With ``background``
a learnable embedding ``[1, D]`` (Xavier-uniform, L2-normalised at use) is appended as the last class. While
training, the columns of novel classes are -inf. Two scalings of the cosine score:

* ``ViLDClassifier``: ``score / tau`` with ``tau = tau_train`` in training and ``tau_val`` at inference
  (defaults 0.007 / 0.01);
* ``ScaledClassifier`` (the reference's ``Classifier`` for ``ml`` prompts): ``score * scaler - bias`` with the
  two numbers read from the prompt file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.formats.prompt_file import select


class NormalizedLinear(nn.Linear):
    """``Linear`` then L2 normalisation of the output: ``[..., in] -> [..., out]`` unit rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=-1)


class TextEmbeddingClassifier(nn.Module):
    """Cosine scores of region features against class text embeddings.

    Args:
        in_features: feature width of the head.
        prompts: a loaded prompt file (``names``, ``embeddings``[, ``scaler``, ``bias``]).
        names: the active classes in remapped-id order (bases first), looked up by name.
        num_base: classes ``>= num_base`` are novel and masked to -inf in training.
        background: append a learnable background embedding (the bbox head; the object head's exists but is
            frozen and forced to -inf, see ``background_enabled``).
        background_enabled: when False the background logit is -inf and its embedding gets no gradient.
        init_std: when set, ``init_weights`` draws the projection from N(0, init_std) with zero bias (after the
            head's own init, mmdet's N(0, 0.01) for ``fc_cls``); None keeps the head's init.
    """

    def __init__(self, in_features: int, prompts: Mapping, names: Sequence[str], num_base: int,
                 background: bool = False, background_enabled: bool = True,
                 init_std: float | None = None) -> None:  # fmt: skip
        super().__init__()
        if init_std is not None and not init_std > 0:
            raise ValueError(f"text classifier init_std must be > 0, got {init_std}")
        self.init_std = init_std
        embeddings = select(prompts, names).float()
        self.register_buffer("embeddings", embeddings, persistent=False)
        self.linear = NormalizedLinear(in_features, embeddings.shape[1])
        self.num_classes, self.num_base = len(names), num_base
        self.background_enabled = background_enabled
        self.background = None
        if background:
            self.background = nn.Parameter(torch.empty(1, embeddings.shape[1]))
            nn.init.xavier_uniform_(self.background)
            self.background.requires_grad_(background_enabled)

    def init_weights(self) -> None:
        """Called by mmengine after the parent head's ``init_cfg``: applies ``init_std`` when it is set."""
        if self.init_std is not None:
            nn.init.normal_(self.linear.weight, 0.0, self.init_std)
            nn.init.zeros_(self.linear.bias)

    def class_embeddings(self) -> torch.Tensor:
        """``[K (+1), D]``: the text rows as given, then the L2-normalised background row."""
        if self.background is None:
            return self.embeddings
        return torch.cat([self.embeddings, F.normalize(self.background, dim=-1)])

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """The raw score ``x_hat . E^T`` ``[N, K (+1)]``; ``x_hat`` is the normalised projection (the distilled
        student)."""
        return self.linear(x) @ self.class_embeddings().T

    def scale(self, score: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.scale(self.cosine(x))
        if self.training and self.num_base < self.num_classes:
            logits = logits.clone()
            logits[:, self.num_base : self.num_classes] = float("-inf")
        if self.background is not None and not self.background_enabled:
            logits = logits.clone()
            logits[:, -1] = float("-inf")
        return logits


class ViLDClassifier(TextEmbeddingClassifier):
    """``score / tau``: ``tau_train`` while training, ``tau_val`` otherwise."""

    def __init__(self, *args, tau_train: float = 0.007, tau_val: float = 0.01, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tau_train, self.tau_val = tau_train, tau_val

    def scale(self, score: torch.Tensor) -> torch.Tensor:
        return score / (self.tau_train if self.training else self.tau_val)


class ScaledClassifier(TextEmbeddingClassifier):
    """``score * scaler - bias`` with ``scaler`` and ``bias`` from the prompt file (fixed)."""

    def __init__(self, in_features: int, prompts: Mapping, *args, **kwargs) -> None:
        if "scaler" not in prompts or "bias" not in prompts:
            raise ValueError("a scaler/bias classifier needs a prompt file with 'scaler' and 'bias' (the ml prompt)")
        super().__init__(in_features, prompts, *args, **kwargs)
        # not named weight/bias: mmengine's initialisers would treat them as parameters
        self.logit_scale, self.logit_bias = float(prompts["scaler"]), float(prompts["bias"])

    def scale(self, score: torch.Tensor) -> torch.Tensor:
        return score * self.logit_scale - self.logit_bias
