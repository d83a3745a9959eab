"""``features``: the reference's released OAKE files of one kind and split into one verified feature-cache shard.

The shard is the one extraction would write (same path, datasets, verification; :mod:`pipeline.formats.
feature_cache`): the images of the split's annotation file whose sorted position mod ``--shards`` is
``--shard``, each image's rows from its file ``{image_id:012d}.pth`` in the ``--source`` folders and archives
(:mod:`pipeline.released.archives`), converted by :mod:`pipeline.released.oake_files`. Rows are added in
ascending image id and committed regularly to ``<shard>.partial``: a killed run resumes from its last commit
(when the attrs match). Images that no source holds are listed in the log and the error; the shard is then not
finalised (the partial keeps the images before the first missing one).

``python -m pipeline.released features --kind blocks --source data/coco/oake/blocks.tar.gz
--annotations instances_train2017.json --model ViT-B-32 --output shard-000.h5``
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.core import dry_run as dry
from pipeline.core import images
from pipeline.core.hashing import sha256_file
from pipeline.core.options import option
from pipeline.formats import feature_cache as cache
from pipeline.models.clip import geometry
from pipeline.released import STAGE, archives

log = logging.getLogger(__name__)

STAGE_VERSION = 1
PREPROCESSING = {
    "globals": "reference: full resolution, CLIP mean/std, interpolated pos (clip.load_default(True))",
    "blocks": "reference: standard 224 (block 0) + 224 px windows, stride <= 112, 1.5x pyramid",
    "objects": "reference: adaptive square sqrt(8wh), object-aware forward on the reference's proposals",
}


@dataclass(frozen=True, kw_only=True)
class FeaturesOptions:
    """features: the reference's released OAKE files of one kind and split into one verified shard."""

    kind: Literal["globals", "blocks", "objects"] = option(help="which OAKE features the sources hold")
    source: tuple[Path, ...] = option(
        help="folders, tar archives (.tar.gz) or zip archives with the reference's {id:012d}.pth files (inputs)",
        nargs="+",
    )
    annotations: Path = option(help="original annotation JSON of the split (input: image ids and sizes)")
    model: str = option(help="CLIP architecture the features must match (clip.model; its embedding dim)")
    output: Path = option(help="shard file .../shard-{i:03d}.h5 (output)")
    shards: int = option(1, help="number of shards of this split")
    shard: int = option(0, help="this shard's index")
    block0_box: str = option(
        "centre",
        help="block 0's box in the shard: the true centre square, or the reference's quirk",
        choices=geometry.BLOCK0_BOX_MODES,
    )
    storage: Literal["float16", "int8"] = option("float16", help="embedding storage (objects: int8 halves the disk)")
    compression: Literal["none", "gzip"] = option(
        "none", help="final shard: contiguous and memory-mapped (none) or gzip-compressed rows"
    )
    buffer_mb: int = option(
        512, help="tar members that arrive before their turn are held in memory up to this, then spilled to disk"
    )
    dry_run: bool = option(False, help="the split's dry-run images of this shard only", action="store_true")


def _sizes(annotations: Path) -> dict[int, tuple[int, int]]:
    """image id -> (width, height) of every image of the file (sizes are needed for block boxes only)."""
    out = {}
    for im in images.image_records(annotations):
        out[int(im["id"])] = (int(im.get("width", 0)), int(im.get("height", 0)))
    return out


def _attrs(opts: FeaturesOptions) -> dict:
    sources = "; ".join(f"{p} ({p.stat().st_size} bytes)" if p.is_file() else f"{p}/" for p in opts.source)
    attrs = {
        "origin": "released",
        "release": f"LutingWang/OADP oadp/oake/{opts.kind}.py: one torch.save per image, {{id:012d}}.pth, float16",
        "release_sources": sources,
        "clip_model": opts.model,
        "clip_source": "reference release (OpenAI ViT-B/32 via LutingWang/CLIP)",
        "preprocessing": PREPROCESSING[opts.kind],
        "stage_version": STAGE_VERSION,
        "annotations_sha256": sha256_file(opts.annotations),
        "shards": opts.shards,
        "shard": opts.shard,
        "dry_run": bool(opts.dry_run),
    }
    if opts.kind == "blocks":
        attrs["block0_box"] = opts.block0_box
        attrs["boxes"] = "released float16 boxes checked against the block geometry, stored exact"
    if opts.kind == "objects":
        attrs["boxes"] = "released float16 proposal boxes (w, h >= 4 before rounding) as float32"
    return attrs


@STAGE.command("features", FeaturesOptions, "import the reference's released OAKE features into a shard")
def run_features(opts: FeaturesOptions) -> dict:
    """Import one shard; returns ``{"images", "seconds", "images_per_s"}`` of the images imported by this run.

    Raises:
        ValueError: a source that is missing or not a folder / tar / zip, an image in two sources, a file that is
            unsafe or not in the reference's format (names the file and key), images that no source holds (lists
            them), an image without width / height (blocks).
    """
    sizes = _sizes(opts.annotations)
    expected = cache.shard_image_ids(sizes, opts.shards, opts.shard)
    if opts.dry_run:
        keep = set(dry.image_ids(opts.annotations))
        expected = [i for i in expected if i in keep]
    if opts.kind == "blocks":
        unsized = [i for i in expected if min(sizes[i]) < 1]
        if unsized:
            raise ValueError(f"{opts.annotations}: images {unsized[:10]} have no width/height (needed for blocks)")
    types = {p: archives.source_type(p) for p in opts.source}
    from pipeline.models.clip import configs as clip_configs

    dim = clip_configs.embed_dim(opts.model)
    compression = None if opts.compression == "none" else opts.compression
    start = time.perf_counter()
    with cache.ShardWriter(
        opts.output, expected, opts.kind, dim, _attrs(opts), storage=opts.storage, compression=compression
    ) as writer:
        queue = writer.pending
        if len(queue) < len(expected):
            log.info(
                "%s: resuming, %d of %d images already imported", opts.output, len(expected) - len(queue), len(expected)
            )
        missing = _fill(writer, queue, opts, types, sizes, dim)
        if missing:
            log.error("%s: %d image(s) missing from the release sources: %s", opts.output, len(missing), missing)
            raise ValueError(
                f"{opts.output}: {len(missing)} of {len(expected)} images are in none of the release sources "
                f"{[str(p) for p in opts.source]} (looked for {{id:012d}}.pth): {missing[:20]}"
                f"{' ...' if len(missing) > 20 else ''}; not finalised (the partial keeps the images before the first)"
            )
        writer.finalize(expected)
    seconds = time.perf_counter() - start
    rate = len(queue) / seconds if seconds > 0 else 0.0
    log.info("%s: %d images imported in %.1f s (%.1f images/s)", opts.output, len(queue), seconds, rate)
    return {"images": len(queue), "seconds": seconds, "images_per_s": rate}


def _fill(writer, queue: list[int], opts: FeaturesOptions, types: dict, sizes: dict, dim: int) -> list[int]:
    """Add the rows of ``queue`` (ascending ids) in order from every source, up to the first image that no source
    holds; returns the images that no source holds."""
    from pipeline.released import oake_files  # torch: imported by the run, not by the stage's parser

    wanted = set(queue)
    randoms = archives.RandomAccess([p for p, t in types.items() if t != "tar"], opts.kind, wanted)
    waiting = archives.Reorder(Path(f"{opts.output}.spill"), opts.buffer_mb << 20)
    done, added_from = 0, {}

    def drain() -> None:
        nonlocal done
        while done < len(queue):
            image_id = queue[done]
            if image_id in randoms.members:
                member = randoms.members.pop(image_id)
                data = randoms.read(member)
            elif image_id in waiting:
                member, data = waiting.pop(image_id)
            else:
                return
            rows = oake_files.read(data, opts.kind, str(member), dim)
            writer.add(image_id, **oake_files.to_rows(rows, opts.kind, sizes[image_id], opts.block0_box, str(member)))
            added_from[image_id] = member
            done += 1

    try:
        drain()
        for path in (p for p, t in types.items() if t == "tar"):
            for member, data in archives.stream_tar(path, opts.kind, wanted):
                iid = member.image_id
                seen = (
                    randoms.members.get(iid) or added_from.get(iid) or (waiting.member(iid) if iid in waiting else None)
                )
                if seen is not None:
                    raise ValueError(f"image {iid} is in two release files: {seen} and {member}")
                waiting.put(member, data)
                drain()
        drain()
        return [i for i in queue[done:] if i not in randoms.members and i not in waiting]
    finally:
        randoms.close()
        waiting.close()
