"""Batched CLIP text encoding, normalised at encode time, and the ViLD template ensemble built on it.

Sequences are padded only to the longest in the batch (the reference fork's "adaptive" tokenizer): with CLIP's
causal attention the [EOT] feature does not depend on the padding, so this is exact and several times faster
than padding to 77. A text longer than the context (77 tokens with [SOT] and [EOT]) is cut to it, as CLIP's own
tokenizer does, and a warning names it: its embedding ignores the rest of the text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from pipeline.core.progress import track
from pipeline.core.templates import vild_templates

log = logging.getLogger(__name__)
_TOKENIZER = None


def tokenizer():
    """The CLIP BPE tokenizer (bundled with open_clip; nothing is downloaded)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = open_clip.tokenizer.SimpleTokenizer()
    return _TOKENIZER


def too_long(texts: Sequence[str], context_length: int = 77) -> list[int]:
    """Positions of the ``texts`` whose tokens with [SOT] and [EOT] exceed ``context_length`` (they are cut to it)."""
    encode = tokenizer().encode
    return [i for i, t in enumerate(texts) if len(encode(t)) + 2 > context_length]


def warn_cut(names: Sequence[str], context_length: int = 77, what: str = "text") -> None:
    """Log one warning naming ``names`` (``what``: texts, class names) as cut to CLIP's context; none: nothing."""
    if names:
        shown = ", ".join(repr(n if len(n) <= 80 else n[:77] + "...") for n in names[:5])
        log.warning(
            "%d %s(s) longer than CLIP's %d-token context are truncated to it (the rest is ignored): %s%s",
            len(names),
            what,
            context_length,
            shown,
            " ..." if len(names) > 5 else "",
        )


def tokenize(texts: Sequence[str], context_length: int = 77, warn: bool = True) -> torch.Tensor:
    """``[N, L]`` int64 token ids, L = the longest sequence (SOT ... EOT), at most ``context_length``; a text cut to
    the context is named in a warning unless ``warn`` is False (a caller that warned by class name)."""
    if warn:
        warn_cut([texts[i] for i in too_long(texts, context_length)], context_length)
    tokens = tokenizer()(list(texts), context_length=context_length)
    length = int((tokens != 0).sum(1).max().item()) if len(texts) else 1
    return tokens[:, :length]


def encode_tokens(
    model: CLIP, tokens: torch.Tensor, token_embeddings: torch.Tensor | None = None, normalize: bool = True
) -> torch.Tensor:
    """Run the text tower on ``tokens [N, L]`` (L <= context length) -> ``[N, D]`` (L2-normalised by default).

    ``token_embeddings [N, L, W]`` replaces the embedding lookup (learned prompts); the [EOT] position still
    comes from ``tokens`` (the argmax, as in CLIP).
    """
    length = tokens.shape[1]
    x = model.token_embedding(tokens) if token_embeddings is None else token_embeddings
    x = x + model.positional_embedding[:length].to(x.dtype)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    x = (
        x @ model.text_projection
        if not isinstance(model.text_projection, torch.nn.Linear)
        else model.text_projection(x)
    )
    return F.normalize(x, dim=-1) if normalize else x


@torch.inference_mode()
def encode_text(
    model: CLIP, texts: Sequence[str], batch_size: int = 256, normalize: bool = True, warn: bool = True
) -> torch.Tensor:
    """``texts`` -> ``[N, D]`` float32 on CPU, batched; L2-normalised unless ``normalize=False``; texts cut to the
    context are named in a warning unless ``warn`` is False."""
    device = model.token_embedding.weight.device
    if warn:
        warn_cut([texts[i] for i in too_long(texts, model.context_length)], model.context_length)
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenize(texts[i : i + batch_size], model.context_length, warn=False).to(device)
        out.append(encode_tokens(model, tokens, normalize=normalize).float())
    if not out:
        return torch.zeros(0, model.text_projection.shape[1])
    return torch.cat(out).cpu()


def context_tokens(names: Sequence[str], n_ctx: int, context_length: int = 77) -> torch.Tensor:
    """``[K, L]`` tokens of ``"X X ... X <name>."`` (``n_ctx`` placeholders, ``_`` in a name read as a space): the
    learned-context prompt, whose placeholder embeddings :func:`encode_with_context` replaces."""
    placeholder = " ".join(["X"] * n_ctx)
    texts = [f"{placeholder} {n.replace('_', ' ')}." for n in names]
    warn_cut([names[i] for i in too_long(texts, context_length)], context_length, "class name")
    return tokenize(texts, context_length, warn=False)


def encode_with_context(model: CLIP, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``[K, D]`` L2-normalised features of ``tokens [K, L]`` (from :func:`context_tokens`) with the placeholder
    embeddings replaced by the learned ``context [n_ctx, W]`` (right after [SOT]; CoOp)."""
    emb = model.token_embedding(tokens).float()
    ctx = context.to(emb)[None].expand(len(tokens), -1, -1)
    emb = torch.cat([emb[:, :1], ctx, emb[:, 1 + context.shape[0] :]], 1)
    return encode_tokens(model, tokens, token_embeddings=emb)


@torch.inference_mode()
def context_embeddings(model: CLIP, names: Sequence[str], context: torch.Tensor) -> torch.Tensor:
    """``[K, D]`` float32 on CPU: the names embedded with a learned context (the ``ml`` prompt's)."""
    device = model.token_embedding.weight.device
    tokens = context_tokens(names, context.shape[0], model.context_length).to(device)
    return encode_with_context(model, tokens, context.to(device)).float().cpu()


def vild_embeddings(
    model,
    names: Sequence[str],
    renormalize: bool = False,
    batch_size: int = 1024,
    progress: bool = False,
    templates: Sequence[str] | None = None,
) -> torch.Tensor:
    """``[K, D]``: per template, encode all names (L2-normalised rows); mean over the templates (``None``: the 74
    ViLD templates; a dry run passes fewer).

    Faithful default: the mean is not renormalised (norm < 1); ``renormalize=True`` makes rows unit-norm.
    ``progress`` logs progress over the templates (:mod:`pipeline.core.progress`).
    """
    total = None
    templates = vild_templates() if templates is None else list(templates)
    if templates:  # one warning naming the class names: the longest template decides whether a name is cut
        longest = max(templates, key=lambda t: len(tokenizer().encode(t.format(""))))
        cut = too_long([longest.format(n) for n in names], model.context_length)
        warn_cut([names[i] for i in cut], model.context_length, "class name")
    desc = f"vild: {len(names)} names x {len(templates)} templates"
    loop = track(templates, desc, unit="template", logger=logging.getLogger(__name__)) if progress else templates
    for template in loop:
        emb = encode_text(model, [template.format(n) for n in names], batch_size=batch_size, warn=False)
        total = emb if total is None else total + emb
    mean = total / len(templates)
    return F.normalize(mean, dim=-1) if renormalize else mean
