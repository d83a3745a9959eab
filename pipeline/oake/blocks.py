"""OAKE blocks (method section 5.4): block 0 = the centre crop through standard preprocessing, then 224 px
windows (stride <= 112, flush with the borders) over a 1.5x pyramid; one L2-normalised row per block, boxes in
original pixels. ``--block0-box reference_quirk`` writes the reference's xywh-style box for block 0.

``python -m pipeline.oake.blocks --annotations A --images DIR --output shard-000.h5 --model M --weights W``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.core import cli
from pipeline.core.device import autocast
from pipeline.core.options import option
from pipeline.models.clip import geometry
from pipeline.oake import extract

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
FORWARD_BATCH = 256


def block_crops(image: Image.Image) -> torch.Tensor:
    """``[Nb, 3, 224, 224]`` uint8 in :func:`geometry.block_boxes` order."""
    import torch  # in the run's workers, not in the parser

    from pipeline.models.clip import preprocess

    crops = [preprocess.standard_uint8(image)]
    level_image = image
    for level in geometry.pyramid(*image.size):
        if level_image.size != level.size:
            level_image = level_image.resize(level.size, Image.BICUBIC)
        for x, y in level.offsets:
            crops.append(preprocess.pil_to_uint8(level_image.crop((x, y, x + geometry.BLOCK, y + geometry.BLOCK))))
    return torch.stack(crops)


def make_prepare(block0: str):
    def prepare(item: extract.ImageItem, image: Image.Image) -> dict:
        return {"crops": block_crops(image), "boxes": geometry.block_boxes(*image.size, block0=block0)}

    return prepare


def make_forward(visual, device: torch.device, precision: str):
    import torch

    from pipeline.models.clip import preprocess, vision

    def forward(records: list[dict]) -> list[dict]:
        crops = torch.cat([r["crops"] for r in records])
        rows = []
        with torch.inference_mode(), autocast(device, precision):
            for i in range(0, len(crops), FORWARD_BATCH):
                batch = preprocess.normalize_uint8(crops[i : i + FORWARD_BATCH].to(device))
                rows.append(vision.encode_standard(visual, batch).float().cpu())
        emb = torch.cat(rows).split([len(r["crops"]) for r in records])
        return [{"embeddings": e, "boxes": r["boxes"]} for e, r in zip(emb, records, strict=True)]

    return forward


@dataclass(frozen=True, kw_only=True)
class BlocksOptions(extract.ExtractOptions):
    """OAKE blocks: one row per block of the pyramid."""

    block0_box: str = option(
        "centre",
        help="block 0's box: the true centre square, or the reference's quirk",
        choices=geometry.BLOCK0_BOX_MODES,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.oake.blocks", description=__doc__)
    extract.add_common_arguments(p, BlocksOptions)
    return p


def run(opts: BlocksOptions) -> dict:
    device, clip = extract.load_model(opts)
    attrs = {
        **clip.provenance(),
        "preprocessing": "standard 224 (block 0) + windows",
        "block0_box": opts.block0_box,
        "block": geometry.BLOCK,
        "max_stride": geometry.MAX_STRIDE,
        "rescale": geometry.RESCALE,
    }
    forward = make_forward(clip.model.visual, device, opts.precision)
    return extract.run(opts, "blocks", clip.embed_dim, make_prepare(opts.block0_box), forward, attrs)


def main(argv: Sequence[str] | None = None) -> dict:
    return extract.extractor_main(build_parser(), BlocksOptions, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
