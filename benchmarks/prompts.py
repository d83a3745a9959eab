"""ViLD prompt file throughput with ViT-B/32-shaped random weights on this machine's CPU.

Names/s of the ``vild`` builder: batched with adaptive padding (the stage's path), batched padded to 77 tokens
(what plain ``encode_text`` does), and one name at a time. ``names_per_s`` counts names x 74 templates.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from pipeline.core import vocab
from pipeline.core.templates import vild_templates
from pipeline.models.clip import load_clip, text


def _rate(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def _padded77(model, names) -> torch.Tensor:
    total = 0
    with torch.inference_mode():
        for template in vild_templates():
            tokens = text.tokenizer()([template.format(n) for n in names])
            total = total + F.normalize(model.encode_text(tokens), dim=-1)
    return total / 74


def run(scale: float = 1.0) -> dict:
    clip = load_clip("ViT-B-32", "random")
    names = list(vocab.COCO_BASE + vocab.COCO_NOVEL)[: max(4, int(65 * scale))]
    single = names[: max(2, len(names) // 8)]
    batched = _rate(lambda: text.vild_embeddings(clip.model, names), len(names))
    padded = _rate(lambda: _padded77(clip.model, names), len(names))
    one = _rate(lambda: [text.vild_embeddings(clip.model, [n]) for n in single], len(single))
    return {
        "benchmark": "prompts",
        "model": "ViT-B-32 (random weights)",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "templates": 74,
        "names_batched": len(names),
        "names_one_at_a_time": len(single),
        "names_per_s_batched_adaptive": round(batched, 2),
        "names_per_s_batched_padded77": round(padded, 2),
        "names_per_s_one_at_a_time": round(one, 2),
        "speedup_batched_vs_one": round(batched / one, 2),
        "speedup_adaptive_vs_padded77": round(batched / padded, 2),
        "estimated_seconds_vild_1217_names": round(1217 / batched),
    }
