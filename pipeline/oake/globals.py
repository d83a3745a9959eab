"""OAKE globals (method section 5.3): the full-resolution image (no resize, no crop), position embedding
interpolated to the token grid, L2-normalised [CLS] -> one row per image.

``python -m pipeline.oake.globals --annotations A --images DIR --output shard-000.h5 --model M --weights W``
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.core import cli
from pipeline.core.device import autocast
from pipeline.oake import extract

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def prepare(item: extract.ImageItem, image: Image.Image) -> dict:
    from pipeline.models.clip import preprocess  # torch: in the run's workers, not in the parser

    return {"image": preprocess.pil_to_uint8(image)}


def make_forward(visual, device: torch.device, precision: str):
    import torch

    from pipeline.models.clip import preprocess, vision

    def forward(records: list[dict]) -> list[dict]:
        out: list[dict | None] = [None] * len(records)
        by_size: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            by_size[tuple(r["image"].shape)].append(i)
        with torch.inference_mode(), autocast(device, precision):
            for idx in by_size.values():
                batch = preprocess.normalize_uint8(torch.stack([records[i]["image"] for i in idx]).to(device))
                emb = vision.encode_any_resolution(visual, batch).float().cpu()
                for i, row in zip(idx, emb, strict=True):
                    out[i] = {"embeddings": row[None]}
        return out

    return forward


@dataclass(frozen=True, kw_only=True)
class GlobalsOptions(extract.ExtractOptions):
    """OAKE globals: one row per image."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.oake.globals", description=__doc__)
    extract.add_common_arguments(p, GlobalsOptions)
    return p


def run(opts: GlobalsOptions) -> dict:
    device, clip = extract.load_model(opts)
    attrs = {**clip.provenance(), "preprocessing": "adaptive: full resolution, CLIP mean/std, interpolated pos"}
    forward = make_forward(clip.model.visual, device, opts.precision)
    return extract.run(opts, "globals", clip.embed_dim, prepare, forward, attrs, rows=lambda item: 1)


def main(argv: Sequence[str] | None = None) -> dict:
    return extract.extractor_main(build_parser(), GlobalsOptions, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
