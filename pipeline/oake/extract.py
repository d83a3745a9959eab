"""The extraction loop shared by the three OAKE extractors.

Images are decoded and prepared (crops, masks) in DataLoader workers; the main process batches across images,
runs CLIP under ``torch.inference_mode`` (autocast fp16/bf16 on GPU), and appends each image's rows to the shard
writer in ascending image-id order. The writer (:mod:`pipeline.formats.feature_cache`) works on ``<shard>.partial``,
commits regularly, resumes after a kill and renames into place only after verification.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from pipeline.core import cli, images
from pipeline.core import dry_run as dry
from pipeline.core.device import resolve_device
from pipeline.core.hashing import sha256_file
from pipeline.core.images import ImageItem, list_images, max_pixels_option  # noqa: F401  (re-exported)
from pipeline.core.options import add_arguments, from_args, option
from pipeline.core.progress import Progress
from pipeline.formats import feature_cache as cache

log = logging.getLogger(__name__)

STAGE_VERSION = 1
_ON_BAD_IMAGE = images.ON_BAD_IMAGE  # (the field ``images`` hides the module inside ExtractOptions)


class _Images:
    """Decodes one image and runs ``prepare`` on it (inside a worker); an unreadable image becomes a record
    ``{"image_id", "item", "error"}`` for the main process to apply the bad-image policy to. A map-style dataset
    (``__len__``, ``__getitem__``), as torch's DataLoader reads one; torch is imported by :func:`run` only."""

    def __init__(
        self,
        items: Sequence[ImageItem],
        prepare: Callable[[ImageItem, Image.Image], dict],
        max_pixels: int | None = images.MAX_IMAGE_PIXELS,
    ) -> None:
        self.items, self.prepare, self.max_pixels = list(items), prepare, max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        try:
            image = images.read_rgb(item, self.max_pixels)
        except images.BAD_IMAGE_ERRORS as exc:
            return {"image_id": item.image_id, "item": item, "error": images.failure(exc)}
        return {"image_id": item.image_id, **self.prepare(item, image)}


@dataclass(frozen=True, kw_only=True)
class ExtractOptions:
    """Options every OAKE extractor has: the split's images, the shard, CLIP and the extraction loop."""

    annotations: Path = option(help="original annotation JSON (input: image list)")
    images: Path = option(help="image folder of the split (input)")
    output: Path = option(help="shard file .../shard-{i:03d}.h5 (output)")
    shards: int = option(1, help="number of shards of this split")
    shard: int = option(0, help="this shard's index")
    model: str = option(help="CLIP architecture (clip.model)")
    weights: str = option(help="CLIP weights or 'random' (clip.weights)")
    device: str = option("auto", help="cpu, cuda, cuda:N or auto")
    precision: Literal["fp32", "fp16", "bf16"] = option("fp16", help="autocast on GPU")
    batch_images: int = option(8, help="images per DataLoader batch")
    workers: int = option(2, help="DataLoader workers decoding images")
    on_bad_image: str = option(
        "error",
        help="an unreadable image stops the job (error) or is skipped and listed in the shard's skipped attr",
        choices=_ON_BAD_IMAGE,
    )
    max_image_pixels: int | None = max_pixels_option()
    dry_run: bool = option(
        False, help=f"only the shard's images among the first {dry.IMAGES} of the split", action="store_true"
    )
    compression: Literal["none", "gzip"] = option(
        "none", help="final shard: contiguous and memory-mapped (none) or gzip-compressed rows"
    )


def add_common_arguments(p: argparse.ArgumentParser, cls: type = ExtractOptions) -> None:
    """The options of ``cls`` (an :class:`ExtractOptions`) and ``--log`` / ``-v``."""
    add_arguments(p, cls)
    cli.add_log_argument(p)


def extractor_main(parser: argparse.ArgumentParser, cls: type, run: Callable[[Any], dict], argv=None) -> dict:
    """Parse ``argv`` into ``cls``, set up logging, ``run`` the extractor."""
    args = parser.parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    return run(from_args(cls, args))


def load_model(opts: ExtractOptions):
    """(device, loaded CLIP) for an extractor's options."""
    from pipeline.models.clip import load_clip

    device = resolve_device(opts.device)
    return device, load_clip(opts.model, opts.weights, device=device)


def shard_items(opts: ExtractOptions) -> list[ImageItem]:
    """The images of this shard, ascending id; under ``dry_run`` those in the split's dry-run set
    (:mod:`pipeline.core.dry_run`: the union over the shards is the set; a shard may get none)."""
    items = list_images(opts.annotations, opts.images)
    ids = set(cache.shard_image_ids([it.image_id for it in items], opts.shards, opts.shard))
    items = [it for it in items if it.image_id in ids]
    return dry.select(items, opts.annotations) if opts.dry_run else items


def run(
    opts: ExtractOptions,
    kind: str,
    dim: int,
    prepare: Callable[[ImageItem, Image.Image], dict],
    forward: Callable[[list[dict]], list[dict]],
    attrs: dict[str, Any],
    storage: str = "float16",
    rows: Callable[[ImageItem], int] | None = None,
) -> dict:
    """Extract one shard. ``forward`` maps prepared records to ``{"embeddings", ["boxes", "objectness"]}`` each.
    ``rows`` (when an image's row count is known before decoding it) gives the writer the shard's row count, so
    that a disk without room for the shard stops the job before any work (:mod:`pipeline.formats.feature_cache`).

    An unreadable image follows ``opts.on_bad_image`` (:class:`pipeline.core.images.ImagePolicy`): ``error`` stops with
    a ``ValueError`` naming it (images done so far stay committed); ``skip`` gives it no rows and lists it in the
    shard's ``skipped`` attr. Returns throughput figures (also logged).
    """
    items = shard_items(opts)
    expected = [it.image_id for it in items]
    attrs = {
        **attrs,
        "stage_version": STAGE_VERSION,
        "annotations_sha256": sha256_file(opts.annotations),
        "shards": opts.shards,
        "shard": opts.shard,
        "dry_run": bool(opts.dry_run),
    }
    start, done = time.perf_counter(), 0
    policy = images.ImagePolicy(opts.on_bad_image, opts.max_image_pixels)
    compression = None if opts.compression == "none" else opts.compression
    expected_rows = None if rows is None else sum(rows(it) for it in items)
    with cache.ShardWriter(
        opts.output, expected, kind, dim, attrs, storage=storage, compression=compression, expected_rows=expected_rows
    ) as writer:
        pending = set(writer.pending)
        todo = [it for it in items if it.image_id in pending]
        if len(todo) < len(items):
            log.info("%s: resuming, %d of %d images already extracted", opts.output, len(items) - len(todo), len(items))
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _Images(todo, prepare, opts.max_image_pixels),
            batch_size=opts.batch_images,
            num_workers=opts.workers if todo else 0,  # a dry-run shard may have no image: no workers to start
            collate_fn=list,
            persistent_workers=False,
        )
        bar = Progress(len(todo), f"oake {kind} {opts.output.parent.name}/{opts.output.name}", unit="img", logger=log)
        for batch in loader:
            good = [r for r in batch if "error" not in r]
            outputs = iter(forward(good)) if good else iter(())
            for record in batch:
                if "error" in record:
                    writer.skip(record["image_id"], policy.bad(record["item"], record["error"]))
                    continue
                out = next(outputs)
                writer.add(record["image_id"], out["embeddings"], out.get("boxes"), out.get("objectness"))
            done += len(batch)
            bar.update(len(batch))
        bar.close()
        writer.finalize(expected)
    seconds = time.perf_counter() - start
    rate = done / seconds if seconds > 0 else 0.0
    log.info("%s: %d images in %.1f s (%.2f images/s)", opts.output, done, seconds, rate)
    return {"images": done, "seconds": seconds, "images_per_s": rate}
