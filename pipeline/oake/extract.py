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
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pipeline.core import cli, images
from pipeline.core.device import resolve_device
from pipeline.core.hashing import sha256_file
from pipeline.core.images import ImageItem, list_images  # noqa: F401  (re-exported: stages import them from here)
from pipeline.formats import feature_cache as cache

log = logging.getLogger(__name__)

STAGE_VERSION = 1
DRY_RUN_IMAGES = 4
DRY_RUN_PROPOSALS = 5


class _Images(Dataset):
    """Decodes one image and runs ``prepare`` on it (inside a worker); an unreadable image becomes a record
    ``{"image_id", "item", "error"}`` for the main process to apply the bad-image policy to."""

    def __init__(self, items: Sequence[ImageItem], prepare: Callable[[ImageItem, Image.Image], dict]) -> None:
        self.items, self.prepare = list(items), prepare

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        try:
            image = images.read_rgb(item)
        except images.BAD_IMAGE_ERRORS as exc:
            return {"image_id": item.image_id, "item": item, "error": f"{type(exc).__name__}: {exc}"}
        return {"image_id": item.image_id, **self.prepare(item, image)}


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--annotations", type=Path, required=True, help="original annotation JSON (input: image list)")
    p.add_argument("--images", type=Path, required=True, help="image folder of the split (input)")
    p.add_argument("--output", type=Path, required=True, help="shard file .../shard-{i:03d}.h5 (output)")
    p.add_argument("--shards", type=int, default=1, help="number of shards of this split (default %(default)s)")
    p.add_argument("--shard", type=int, default=0, help="this shard's index")
    p.add_argument("--model", required=True, help="CLIP architecture (clip.model)")
    p.add_argument("--weights", required=True, help="CLIP weights or 'random' (clip.weights)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16", help="autocast on GPU")
    p.add_argument("--batch-images", type=int, default=8, help="images per DataLoader batch")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers decoding images")
    p.add_argument(
        "--on-bad-image",
        choices=images.ON_BAD_IMAGE,
        default="error",
        help="an unreadable image stops the job (error) or is skipped and listed in the shard's skipped attr",
    )
    p.add_argument("--dry-run", action="store_true", help=f"first {DRY_RUN_IMAGES} images of the shard only")
    p.add_argument(
        "--compression",
        choices=("none", "gzip"),
        default="none",
        help="final shard: contiguous and memory-mapped (none) or gzip-compressed rows",
    )
    cli.add_log_argument(p)


def load_model(args: argparse.Namespace):
    """(device, loaded CLIP) for an extractor's arguments."""
    from pipeline.models.clip import load_clip

    device = resolve_device(args.device)
    return device, load_clip(args.model, args.weights, device=device)


def shard_items(args: argparse.Namespace) -> list[ImageItem]:
    items = list_images(args.annotations, args.images)
    ids = set(cache.shard_image_ids([it.image_id for it in items], args.shards, args.shard))
    items = [it for it in items if it.image_id in ids]
    return items[:DRY_RUN_IMAGES] if args.dry_run else items


def run(
    args: argparse.Namespace,
    kind: str,
    dim: int,
    prepare: Callable[[ImageItem, Image.Image], dict],
    forward: Callable[[list[dict]], list[dict]],
    attrs: dict[str, Any],
    storage: str = "float16",
) -> dict:
    """Extract one shard. ``forward`` maps prepared records to ``{"embeddings", ["boxes", "objectness"]}`` each.

    An unreadable image follows ``args.on_bad_image`` (:class:`pipeline.core.images.ImagePolicy`): ``error`` stops with
    a ``ValueError`` naming it (images done so far stay committed); ``skip`` gives it no rows and lists it in the
    shard's ``skipped`` attr. Returns throughput figures (also logged).
    """
    items = shard_items(args)
    expected = [it.image_id for it in items]
    attrs = {
        **attrs,
        "stage_version": STAGE_VERSION,
        "annotations_sha256": sha256_file(args.annotations),
        "shards": args.shards,
        "shard": args.shard,
        "dry_run": bool(args.dry_run),
    }
    start, done = time.perf_counter(), 0
    policy = images.ImagePolicy(args.on_bad_image)
    compression = None if getattr(args, "compression", "none") == "none" else args.compression
    with cache.ShardWriter(args.output, expected, kind, dim, attrs, storage=storage, compression=compression) as writer:
        pending = set(writer.pending)
        todo = [it for it in items if it.image_id in pending]
        if len(todo) < len(items):
            log.info("%s: resuming, %d of %d images already extracted", args.output, len(items) - len(todo), len(items))
        loader = DataLoader(
            _Images(todo, prepare),
            batch_size=args.batch_images,
            num_workers=args.workers,
            collate_fn=list,
            persistent_workers=False,
        )
        bar = tqdm(total=len(todo), desc=f"oake {kind} {args.output.parent.name}/{args.output.name}", unit="img")
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
    log.info("%s: %d images in %.1f s (%.2f images/s)", args.output, done, seconds, rate)
    return {"images": done, "seconds": seconds, "images_per_s": rate}
