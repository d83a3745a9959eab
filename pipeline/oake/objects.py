"""OAKE objects (method section 5.5): proposals with w, h >= 4; per proposal the adaptive square crop
(side sqrt(8 w h), shifted inside), standard preprocessing, the foreground mask on the half-stride token grid,
and the object-aware forward ([OBJ] attends to foreground patches and itself). Rows are L2-normalised; the
stored boxes are the filtered, un-expanded proposals; ``objectness`` keeps their scores.

The paper's OAKE ablations are options: ``--expand-mode`` (the crop strategy: adaptive, constant 224 px square,
longest-edge square, the bare rectangle; :func:`pipeline.models.clip.geometry.object_crop`) and
``--no-object-masking`` (the [CLS] of the half-stride model instead of the masked [OBJ] token). Both are recorded
in the shard's attrs, so a partial shard of other settings is started again.

``python -m pipeline.oake.objects --proposals P.h5 --annotations A --images DIR --output shard-000.h5 ...``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from pipeline.core import cli
from pipeline.core import dry_run as dry
from pipeline.core.device import autocast
from pipeline.core.hashing import sha256_file
from pipeline.core.options import option
from pipeline.formats.proposal_file import ProposalFile
from pipeline.models.clip import geometry
from pipeline.oake import extract

if TYPE_CHECKING:
    import torch

    from pipeline.models.clip import vision

log = logging.getLogger(__name__)


def kept_proposals(proposals: ProposalFile, image_id: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The proposals of one image that get a row: ``boxes [n, 4]`` and ``scores [n]`` with w, h >= 4, the first
    ``limit`` of them (dry run)."""
    boxes, scores = proposals.get(image_id)
    keep = geometry.keep_objects(boxes)
    return boxes[keep][:limit], scores[keep][:limit]


def make_prepare(proposals: ProposalFile, grid: int, limit: int | None, expand_mode: str = "adaptive"):
    from pipeline.models.clip import preprocess  # torch: in the run's workers, not in the parser

    def prepare(item: extract.ImageItem, image: Image.Image) -> dict:
        boxes, scores = kept_proposals(proposals, item.image_id, limit)
        crops, masks = preprocess.object_inputs(image, boxes, grid, expand_mode)
        return {"crops": crops, "masks": masks, "boxes": boxes, "objectness": scores}

    return prepare


def make_forward(encoder: vision.ObjectAwareEncoder, device: torch.device, precision: str):
    import torch

    from pipeline.models.clip import preprocess

    def forward(records: list[dict]) -> list[dict]:
        crops = torch.cat([r["crops"] for r in records])
        masks = torch.cat([r["masks"] for r in records])
        rows = []
        with torch.inference_mode(), autocast(device, precision):
            for i in range(0, len(crops), encoder.mini_batch):
                batch = preprocess.normalize_uint8(crops[i : i + encoder.mini_batch].to(device))
                rows.append(encoder(batch, masks[i : i + encoder.mini_batch].to(device)).float().cpu())
        emb = torch.cat(rows) if rows else torch.zeros(0, encoder.visual.output_dim)
        emb = emb.split([len(r["crops"]) for r in records])
        return [
            {"embeddings": e, "boxes": r["boxes"], "objectness": r["objectness"]}
            for e, r in zip(emb, records, strict=True)
        ]

    return forward


@dataclass(frozen=True, kw_only=True)
class ObjectsOptions(extract.ExtractOptions):
    """OAKE objects: one row per proposal."""

    batch_images: int = option(2, help="images per DataLoader batch")
    proposals: Path = option(help="proposals file of the split (input)")
    storage: Literal["float16", "int8"] = option(
        "float16", help="embedding storage; int8 = per-row scale, about half the disk"
    )
    expand_mode: str = option(
        geometry.EXPAND_MODES[0],
        help="crop strategy: adaptive sqrt(8wh) square (the reference), constant 224 px square, longest-edge "
        "square, or the proposal rectangle resized to 224 x 224",
        choices=geometry.EXPAND_MODES,
    )
    object_masking: bool = option(
        True, help="object-aware attention mask on the [OBJ] token; off: the half-stride model's [CLS]"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.oake.objects", description=__doc__)
    extract.add_common_arguments(p, ObjectsOptions)
    return p


def run(opts: ObjectsOptions) -> dict:
    proposals = ProposalFile(opts.proposals)
    missing = [it.image_id for it in extract.shard_items(opts) if it.image_id not in proposals]
    if missing:
        raise ValueError(f"{opts.proposals}: no proposals for image(s) {missing[:10]} of {opts.annotations}")
    from pipeline.models.clip import vision

    device, clip = extract.load_model(opts)
    encoder = vision.ObjectAwareEncoder(clip.model.visual, masking=opts.object_masking)
    attrs = {
        **clip.provenance(),
        # the mask on the unrounded crop region (the reference's): another value in a partial shard restarts it
        "preprocessing": "object crop, standard 224 (rectangle: resized), mask on the unrounded region",
        "expand_mode": opts.expand_mode,
        "object_masking": bool(opts.object_masking),
        "proposals": str(opts.proposals),
        "proposals_sha256": sha256_file(opts.proposals),
        "min_side": geometry.MIN_OBJECT_SIDE,
        "background_bias": vision.BACKGROUND_BIAS,
        "mini_batch": encoder.mini_batch,
    }
    limit = dry.OBJECTS_PER_IMAGE if opts.dry_run else None
    forward = make_forward(encoder, device, opts.precision)
    return extract.run(
        opts,
        "objects",
        clip.embed_dim,
        make_prepare(proposals, encoder.grid, limit, opts.expand_mode),
        forward,
        attrs,
        storage=opts.storage,
        rows=lambda item: len(kept_proposals(proposals, item.image_id, limit)[0]),
    )


def main(argv: Sequence[str] | None = None) -> dict:
    return extract.extractor_main(build_parser(), ObjectsOptions, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
