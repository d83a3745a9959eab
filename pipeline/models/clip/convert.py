"""Hugging Face ``CLIPModel`` <-> open_clip (OpenAI layout) state-dict conversion for ViT CLIP models.

The two layouts hold the same tensors: HF splits attention into q/k/v projections (open_clip concatenates them
into ``in_proj``), names layers differently and stores projections as ``Linear`` weights (transposed).
"""

from __future__ import annotations

import torch

_BLOCK = {  # HF block sub-module -> open_clip block sub-module
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_TOWERS = {"vision_model": "visual.transformer.resblocks", "text_model": "transformer.resblocks"}
_FLAT = {  # HF key -> open_clip key (same tensor)
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection"}


def _num_layers(keys, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in keys if k.startswith(prefix)})


def hf_to_open_clip(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``CLIPModel.state_dict()`` -> open_clip ``CLIP.state_dict()``."""
    out = {dst: hf[src] for src, dst in _FLAT.items()}
    out.update({dst: hf[src].t().contiguous() for src, dst in _TRANSPOSED.items()})
    for tower, dst_prefix in _TOWERS.items():
        src_prefix = f"{tower}.encoder.layers."
        for i in range(_num_layers(hf, src_prefix)):
            src, dst = f"{src_prefix}{i}.", f"{dst_prefix}.{i}."
            for kind in ("weight", "bias"):
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
                )
                for a, b in _BLOCK.items():
                    out[f"{dst}{b}.{kind}"] = hf[f"{src}{a}.{kind}"]
    return out


def open_clip_to_hf(oc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip ``CLIP.state_dict()`` -> HF ``CLIPModel.state_dict()`` (inverse of :func:`hf_to_open_clip`)."""
    out = {src: oc[dst] for src, dst in _FLAT.items()}
    out.update({src: oc[dst].t().contiguous() for src, dst in _TRANSPOSED.items()})
    for tower, oc_prefix in _TOWERS.items():
        for i in range(_num_layers(oc, oc_prefix + ".")):
            hf, src = f"{tower}.encoder.layers.{i}.", f"{oc_prefix}.{i}."
            for kind in ("weight", "bias"):
                q, k, v = oc[f"{src}attn.in_proj_{kind}"].chunk(3)
                out.update(
                    {
                        f"{hf}self_attn.q_proj.{kind}": q,
                        f"{hf}self_attn.k_proj.{kind}": k,
                        f"{hf}self_attn.v_proj.{kind}": v,
                    }
                )
                for a, b in _BLOCK.items():
                    out[f"{hf}{a}.{kind}"] = oc[f"{src}{b}.{kind}"]
    return out
