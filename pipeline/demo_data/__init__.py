"""Stage ``demo_data``: a seeded, generated detection dataset with real JPEG images.

Each category is a coloured, textured shape named ``"<colour> [<texture>] <shape>"`` (``"red circle"``,
``"blue striped square"``; ``solid`` is left out of the name). Scenes have a noisy, textured background and
several objects at varied sizes, rotations and overlaps; some images carry an ``iscrowd`` group (a cluster of
small objects of one class annotated once, with an RLE mask). Every object has a polygon mask.

Outputs under ``--out-dir``::

    images/{train,val}/{image_id:012d}.jpg
    annotations/instances_{train,val}.json   COCO format (1-based category ids, iscrowd, polygons / RLE)
    annotations/lvis_{train,val}.json        LVIS format of the same images: frequency r/c/f (novel -> r,
                                             base -> f or c by training image count), neg_category_ids,
                                             not_exhaustive_category_ids, coco_url-style image names; no crowd

With ``--captions-per-class N`` (the CLIP teacher's data) the generator also writes captioned
single-object crops of every class, base and novel alike (CLIP saw everything; the detector sees only base boxes)::

    captions/{train,test}/{index:06d}.png    square crops, 48-128 px, one object on the same noisy background
    captions/captions_{train,test}.json      [{"file_name", "caption", "category"}] (category: the class name)

``train`` has N crops per class; ``test`` (held out, zero-shot evaluation) has ``--caption-test-per-class``.
The CLIP teacher (:mod:`pipeline.teacher`) draws the same crops in memory with :func:`draw_caption_crop`.

With ``--custom DIR`` the same scenes are also written as a user's own COCO-format dataset (``dataset: custom``)
with non-contiguous ids, names with spaces, hyphens, upper case and accents, and nested image folders
(:mod:`pipeline.demo_data.custom`).

Every image is drawn from its own seed ``(seed, split, index)``, so the dataset is identical across runs and
machines whatever the order of generation.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic, cli
from pipeline.demo_data.custom import write_custom
from pipeline.demo_data.dataset import (
    coco_url,
    frequencies,
    generate_split,
    image_id,
    to_lvis,
    write_captions,
)
from pipeline.world.captions import CAPTION_SPLIT_INDEX, CaptionCrop, CaptionOptions, draw_caption_crop
from pipeline.world.draw import (
    CROWD_PARTS,
    SPLIT_INDEX,
    DemoOptions,
    DrawnObject,
    background,
    class_weights,
    draw_image,
    polygon_mask,
    rle_uncompressed,
    shape_polygon,
    texture_layer,
)
from pipeline.world.grammar import (
    CAPTION_TEMPLATES,
    COLOURS,
    SHAPE_SYNONYMS,
    SHAPES,
    TEXTURES,
    ClassSpec,
    DemoDataError,
    class_synonyms,
    split_kind,
)

__all__ = [
    "CAPTION_SPLIT_INDEX",
    "CAPTION_TEMPLATES",
    "COLOURS",
    "CROWD_PARTS",
    "SHAPES",
    "SHAPE_SYNONYMS",
    "SPLIT_INDEX",
    "TEXTURES",
    "CaptionCrop",
    "CaptionOptions",
    "ClassSpec",
    "DemoDataError",
    "DemoOptions",
    "DrawnObject",
    "background",
    "build_parser",
    "class_synonyms",
    "class_weights",
    "coco_url",
    "draw_caption_crop",
    "draw_image",
    "frequencies",
    "generate_split",
    "image_id",
    "main",
    "polygon_mask",
    "rle_uncompressed",
    "run",
    "shape_polygon",
    "split_kind",
    "texture_layer",
    "to_lvis",
    "write_captions",
]

log = logging.getLogger(__name__)


def run(opts: DemoOptions) -> None:
    """Generate both splits; annotation files are written last, so they never refer to a missing image."""
    kind = split_kind(opts.classes, opts.novel)
    log.info(
        "demo split: %d base, %d novel classes: novel = %s%s",
        len(opts.classes) - len(opts.novel),
        len(opts.novel),
        {"combinations": "unseen combinations of base colours and shapes", "shapes": "unseen shapes"}.get(
            kind["kind"], kind["kind"]
        ),
        f" ({', '.join(kind['unseen_shapes'])})" if kind["unseen_shapes"] else "",
    )
    cocos = {split: generate_split(opts, split)[0] for split in ("train", "val")}
    freq = frequencies(opts, cocos["train"])
    for split, coco in cocos.items():
        atomic.write_json(opts.out_dir / "annotations" / f"lvis_{split}.json", to_lvis(opts, split, coco, freq))
        atomic.write_json(opts.out_dir / "annotations" / f"instances_{split}.json", coco)
        log.info(
            "demo %s: %d images, %d annotations (%d crowd)",
            split,
            len(coco["images"]),
            len(coco["annotations"]),
            sum(a["iscrowd"] for a in coco["annotations"]),
        )


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"image size {text!r} is not WIDTHxHEIGHT") from exc
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out-dir", type=Path, required=True, help="output root (outputs listed above)")
    p.add_argument(
        "--classes", nargs="+", action="extend", required=True,
        help="category names, '<colour> [<texture>] <shape>'",
    )
    p.add_argument("--novel", nargs="*", action="extend", default=[], help="names marked rare in the LVIS-format files")
    p.add_argument("--num-train", type=int, default=DemoOptions.num_train, help="training images (default %(default)s)")
    p.add_argument("--num-val", type=int, default=DemoOptions.num_val, help="validation images (default %(default)s)")
    p.add_argument("--sizes", type=_size, nargs="+", default=list(DemoOptions.sizes), help="e.g. 320x240 256x256")
    p.add_argument("--objects", type=int, nargs=2, default=DemoOptions.objects, metavar=("MIN", "MAX"))
    p.add_argument("--object-scale", type=float, nargs=2, default=DemoOptions.object_scale, metavar=("MIN", "MAX"))
    p.add_argument("--max-iou", type=float, default=DemoOptions.max_iou)
    p.add_argument("--crowd-prob", type=float, default=DemoOptions.crowd_prob)
    p.add_argument(
        "--novel-in-train",
        type=float,
        default=DemoOptions.novel_in_train,
        help="how often a novel class is drawn in a training scene relative to a base class (0: never, 1: as often)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument(
        "--captions-per-class",
        type=int,
        default=0,
        help="also write captioned crops of every class under captions/ (0: none, the default)",
    )
    p.add_argument("--caption-test-per-class", type=int, default=20, help="held-out captioned crops per class")
    p.add_argument(
        "--captions-only",
        action="store_true",
        help="write only the captioned crops (rule demo_captions: they depend on the classes and the seed alone)",
    )
    p.add_argument(
        "--custom",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the scenes as a custom-format dataset under DIR (pipeline.demo_data.custom)",
    )
    cli.add_log_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    opts = DemoOptions(
        out_dir=args.out_dir,
        classes=tuple(args.classes),
        novel=tuple(args.novel),
        num_train=args.num_train,
        num_val=args.num_val,
        sizes=tuple(tuple(s) for s in args.sizes),
        objects=tuple(args.objects),
        object_scale=tuple(args.object_scale),
        max_iou=args.max_iou,
        crowd_prob=args.crowd_prob,
        novel_in_train=args.novel_in_train,
        seed=args.seed,
        quality=args.quality,
    )
    if args.captions_only and args.captions_per_class < 1:
        raise DemoDataError("--captions-only needs --captions-per-class >= 1")
    if not args.captions_only:
        run(opts)
        if args.custom is not None:
            write_custom(opts.out_dir, args.custom)
    if args.captions_per_class > 0:
        write_captions(opts, args.captions_per_class, args.caption_test_per_class)
