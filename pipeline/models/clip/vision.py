"""The ViT forwards OAKE needs, built on a loaded open_clip ``VisionTransformer`` (no second copy of CLIP).

(a) :func:`encode_any_resolution`: full-resolution images, position embedding interpolated bilinearly to the
    token grid (globals, method section 5.3).
(b) :func:`encode_standard`: the ordinary 224 px forward (blocks, section 5.4).
(c) :class:`ObjectAwareEncoder`: the object-aware forward of section 5.5: patch conv at half stride with padding
    ``patch/2 - 1`` (ViT-B/32: stride 16, padding 15, 14x14 grid at 224 px), position embedding interpolated to
    that grid, and an [OBJ] stream that starts as a copy of [CLS] and, before each residual block, attends to the
    patch tokens entering that block and to itself, with an additive -100 on background patches. With the
    object-aware masking off (the paper's mask ablation) the output is the [CLS] of the same half-stride model:
    an [OBJ] stream without the mask attends to the same keys as [CLS] and equals it.

All outputs are L2-normalised ``[N, D]`` in the model's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

BACKGROUND_BIAS = -100.0
OBJECT_MINI_BATCH = 512


def _check(visual: VisionTransformer) -> None:
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise ValueError("OAKE needs a class-token ViT (no attentional pooling)")


def base_grid(visual: VisionTransformer) -> tuple[int, int]:
    return tuple(visual.grid_size)


def interpolate_pos(visual: VisionTransformer, grid: tuple[int, int]) -> torch.Tensor:
    """``[1 + gh * gw, C]`` position embedding: class position kept, patch positions bilinearly resized."""
    pos = visual.positional_embedding
    gh0, gw0 = base_grid(visual)
    if tuple(grid) == (gh0, gw0):
        return pos
    patches = pos[1:].reshape(1, gh0, gw0, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=tuple(grid), mode="bilinear", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([pos[:1], patches], 0)


def _tokens(
    visual: VisionTransformer, images: torch.Tensor, stride: int | None = None, padding: int = 0
) -> torch.Tensor:
    """Patch tokens + [CLS] + position embedding + ln_pre: ``[B, 1 + gh * gw, C]``."""
    weight = visual.conv1.weight
    x = F.conv2d(images.to(weight.dtype), weight, stride=stride or visual.conv1.stride, padding=padding)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + interpolate_pos(visual, grid).to(x.dtype)
    return visual.ln_pre(x)


def _project(visual: VisionTransformer, token: torch.Tensor) -> torch.Tensor:
    out = visual.ln_post(token)
    if visual.proj is not None:
        out = out @ visual.proj
    return F.normalize(out, dim=-1)


def encode_any_resolution(visual: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """(a) ``images [B, 3, H, W]`` at any size (a batch shares one size) -> ``[B, D]``; the conv drops remainders."""
    _check(visual)
    x = visual.transformer(_tokens(visual, images))
    return _project(visual, x[:, 0])


def encode_standard(visual: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """(b) the model's own forward at its native size -> ``[B, D]``."""
    return F.normalize(visual(images.to(visual.conv1.weight.dtype)), dim=-1)


class ObjectAwareEncoder:
    """(c) the object-aware forward, sharing the weights of ``visual``.

    Args:
        visual: the loaded CLIP vision tower (unchanged; the half-stride conv reuses its kernel).
        mini_batch: objects per forward (the reference's 512).
        masking: the object-aware attention mask (the reference's); ``False`` = the [CLS] output of the
            half-stride model (:meth:`encode_cls`), the foreground masks are then not used.
    """

    def __init__(self, visual: VisionTransformer, mini_batch: int = OBJECT_MINI_BATCH, masking: bool = True) -> None:
        _check(visual)
        self.visual = visual
        self.mini_batch = mini_batch
        self.masking = masking
        patch = visual.conv1.kernel_size[0]
        self.stride = patch // 2
        self.padding = patch // 2 - 1
        size = visual.image_size[0]
        self.grid = (size + 2 * self.padding - patch) // self.stride + 1

    def half_stride_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return _tokens(self.visual, images, stride=self.stride, padding=self.padding)

    def encode_cls(self, images: torch.Tensor) -> torch.Tensor:
        """[CLS] output of the half-stride model (no object stream) -> ``[N, D]``."""
        x = self.visual.transformer(self.half_stride_tokens(images))
        return _project(self.visual, x[:, 0])

    def _forward(self, images: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        x = self.half_stride_tokens(images)
        n, length, _ = x.shape
        y = x[:, :1]
        fg = foreground.reshape(n, -1).to(torch.bool)
        if fg.shape[1] != length - 1:
            raise ValueError(f"foreground masks have {fg.shape[1]} cells, the token grid {length - 1}")
        bias = torch.where(fg, 0.0, BACKGROUND_BIAS).to(x.dtype)
        bias = torch.cat([bias, bias.new_zeros(n, 1)], 1)[:, None, :]  # keys: patches, then [OBJ]
        for block in self.visual.transformer.resblocks:
            heads = block.attn.num_heads
            mask = bias.repeat_interleave(heads, 0)  # [N * heads, 1, L]
            kv = block.ln_1(torch.cat([x[:, 1:], y], 1))
            attn = block.attn(block.ln_1(y), kv, kv, need_weights=False, attn_mask=mask)[0]
            y = y + block.ls_1(attn)
            y = y + block.ls_2(block.mlp(block.ln_2(y)))
            x = block(x)
        return _project(self.visual, y[:, 0])

    def __call__(self, images: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        """``images [N, 3, S, S]`` (S = the model's size) and ``foreground [N, g, g]`` bool (True = object)
        -> ``[N, D]`` object embeddings, in mini-batches of ``mini_batch``."""
        if len(images) == 0:
            return images.new_zeros(0, self.visual.output_dim)
        rows = []
        for i in range(0, len(images), self.mini_batch):
            batch = images[i : i + self.mini_batch]
            masks = foreground[i : i + self.mini_batch]
            rows.append(self._forward(batch, masks) if self.masking else self.encode_cls(batch))
        return torch.cat(rows)
