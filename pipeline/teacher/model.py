"""The teacher's model: creation, the exact downsampled patch embedding, trainable token rows, saving.

* :func:`create_model`: the seeded, untrained open_clip ``CLIP`` of ``opts.model`` (patch kernel made constant on
  ``f x f`` blocks by :func:`block_constant_init` when ``opts.downsample = f > 1``);
* :func:`encode_image_downsampled`: ``[B, 3, 224 / f, 224 / f]`` -> ``[B, D]``, the tower's own forward on the
  ``f``-x upsampled images through the pooled kernel (:func:`pooled_patch_kernel`, ``[W, 3, P / f, P / f]``);
* :func:`caption_token_ids` and :class:`TokenRows`: the token-embedding rows that the captions use, trained as a
  separate parameter ``[R, D]`` and written back into the table;
* :func:`parameter_counts`, :func:`save_checkpoint` (a plain, byte-reproducible open_clip state dict).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.core import atomic
from pipeline.teacher.options import TeacherError, TeacherOptions
from pipeline.world.grammar import CAPTION_TEMPLATES, class_synonyms

log = logging.getLogger(__name__)


def create_model(opts: TeacherOptions):
    """The untrained teacher: open_clip ``CLIP`` of ``opts.model``, initialised from ``opts.seed``."""
    from pipeline.models.clip import configs, create_architecture

    if opts.model not in configs.known_models():
        raise TeacherError(f"teacher --model {opts.model!r} is not a known CLIP config")
    model = create_architecture(opts.model, seed=opts.seed).float()
    if opts.downsample > 1:
        block_constant_init(model.visual, opts.downsample)
    log.info("CLIP %s: weights teacher (initialised from seed %d, trained by this stage)", opts.model, opts.seed)
    return model


def block_constant_init(visual, factor: int) -> None:
    """Make the patch kernel constant on ``factor x factor`` blocks (the pooled kernel keeps the default init
    scale). Training through :func:`encode_image_downsampled` keeps it so: every block gets one gradient."""
    w = visual.conv1.weight
    if w.shape[-1] % factor:
        raise TeacherError(f"teacher --downsample {factor} does not divide the patch size {w.shape[-1]}")
    with torch.no_grad():
        sub = w[:, :, ::factor, ::factor] / factor
        w.copy_(sub.repeat_interleave(factor, 2).repeat_interleave(factor, 3))


def pooled_patch_kernel(visual, factor: int) -> torch.Tensor:
    """``[W, 3, P / f, P / f]``: the patch kernel summed over ``f x f`` blocks."""
    w = visual.conv1.weight
    width, channels, patch, _ = w.shape
    q = patch // factor
    return w.reshape(width, channels, q, factor, q, factor).sum((3, 5))


def encode_image_downsampled(visual, images: torch.Tensor, factor: int) -> torch.Tensor:
    """The tower's own forward on the ``factor``-x nearest-upsampled ``images`` (``[B, 3, 224 / f, 224 / f]``),
    computed at their size: the patch convolution of an upsampled image is the pooled kernel at stride P / f.
    Unnormalised ``[B, D]``, like ``visual(images)``."""
    if factor == 1:
        return visual(images)
    kernel = pooled_patch_kernel(visual, factor)
    x = F.conv2d(images, kernel, stride=kernel.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    pooled, _ = visual._pool(visual.transformer(x))
    return pooled @ visual.proj if visual.proj is not None else pooled


def caption_token_ids(opts: TeacherOptions) -> torch.Tensor:
    """The sorted token ids of every caption the stream can draw (every template over every name and synonym)."""
    from pipeline.models.clip import text

    names = [n for spec in opts.specs for n in (spec.name, *class_synonyms(spec))]
    captions = [t.format(n) for t in CAPTION_TEMPLATES for n in names]
    return torch.unique(text.tokenize(captions))


class TokenRows(torch.nn.Module):
    """Trainable copies of the token-embedding rows ``ids``; :meth:`embed` looks tokens up in them (other ids in
    the frozen table) and :meth:`write_back` copies them into the table, so the saved model is plain open_clip."""

    def __init__(self, table: torch.nn.Embedding, ids: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.rows = torch.nn.Parameter(table.weight.detach()[ids].clone())
        lookup = torch.full((table.num_embeddings,), -1, dtype=torch.int64)
        lookup[ids] = torch.arange(len(ids))
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("ids", ids.clone(), persistent=False)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        index = self.lookup[tokens]
        frozen = F.embedding(tokens, self.table.weight.detach())
        return torch.where((index >= 0)[..., None], self.rows[index.clamp(min=0)], frozen)

    @torch.no_grad()
    def write_back(self) -> None:
        self.table.weight[self.ids] = self.rows.detach()


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    visual = sum(p.numel() for p in model.visual.parameters())
    token = model.token_embedding.weight.numel()
    return {"total": total, "visual": visual, "text": total - visual, "token_embedding": token}


def save_checkpoint(model, path: str | Path) -> None:
    """The open_clip state dict as a plain dict of float32 CPU tensors (``weights_only`` loadable), atomically.

    Byte-reproducible: serialised in memory first (``torch.save`` to a file records the file's temporary name in
    the archive), so the same weights give the same file and the same ``clip_weights_hash`` downstream."""
    import io

    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic.atomic_path(path, suffix=Path(path).suffix) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
