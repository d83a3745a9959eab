"""Stage ``export_instructcv``: detection image pairs with instructions in InstructCV's layout.

Command::

    python -m pipeline.export_instructcv --annotations ANN.json --images DIR --out-dir .../image_pairs_evaluation
        [--detections DETS.json --score-thr 0.5] [--templates "detect the {}" ...] [--seed 0]

One pair per image and class present in it: from the ground truth of ``ANN.json`` (every box of the class, crowd
groups included) or, with ``--detections``, from a detector's COCO-format detections scoring above
``--score-thr`` (category ids of ``ANN.json``), so that a detector's knowledge of novel classes labels pairs for
classes no annotator drew. Only the images of ``ANN.json`` are read.

Layout (the one InstructCV's training loader ``edit_dataset.py`` reads; names as its
``build_data/format_dataset_*.py`` make them for COCO detection)::

    OUT/seeds.json                        [[PAIR, [PAIR]], ...], PAIR = "<image stem>_det_<class name>"
    OUT/PAIR/PAIR_0.jpg                   the input image (the JPEG's bytes; other formats re-encoded)
    OUT/PAIR/PAIR_1.jpg                   the image with every box of the class outlined in blue, 4 px
    OUT/PAIR/prompt.json                  {"edit": instruction}
    OUT/PAIR/bbox.json                    {"bbox": [[x1, y1, x2, y2], ...]}

``OUT`` is ``image_pairs_train`` or ``image_pairs_evaluation``. The class name keeps its spaces, as InstructCV's
(a ``/`` becomes ``_``); a name part longer than :data:`CLASS_BYTES` (an image stem that would make the pair name
longer than :data:`NAME_BYTES`) keeps its start and ends in ``~`` and 8 hex digits of its sha256, so that every file
name stays within the 255 bytes file systems allow, and stays distinct and readable. Two classes that still give one
pair name (``a/b`` and ``a_b``) are an error naming both.

The target is ``_1.jpg``: InstructCV's loader opens ``_1.jpg`` for ``det`` pairs (its builder script writes
``_1.png``, which that loader never reads). The instruction is one of ``--templates`` (``{}`` = the class name),
picked per pair by a generator seeded with ``--seed`` and the pair's name, so a pair's instruction does not depend
on the others. The folder is written beside ``OUT`` and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic, images
from pipeline.core.images import ON_BAD_IMAGE, max_pixels_option
from pipeline.core.options import Command, option
from pipeline.core.render import draw_boxes

log = logging.getLogger(__name__)

TEMPLATES = ("detect the {}",)  # InstructCV's fixed instruction; the config's default adds paraphrases
BOX_COLOUR, BOX_WIDTH = "blue", 4
NAME_BYTES = 200  # a pair name in UTF-8: its files add "_0.jpg"; file systems allow 255 bytes per name
CLASS_BYTES = 100  # the class part of a pair name


@dataclass(frozen=True)
class ExportOptions:
    """export_instructcv: detection pairs of one split in InstructCV's layout."""

    annotations: Path = option(help="remapped annotation file: images, categories (and ground truth) (input)")
    images: Path = option(help="image folder of the split (input)")
    out_dir: Path = option(help="image_pairs_train or image_pairs_evaluation folder (output)")
    detections: Path | None = option(None, help="COCO-format detections in place of the ground truth (input)")
    score_thr: float = option(0.5, help="with --detections: keep detections scoring above this")
    templates: tuple[str, ...] = option(TEMPLATES, help="instruction templates, '{}' = the class name", nargs="+")
    seed: int = option(0, help="seed of the instruction choice")
    on_bad_image: str = option(
        "error", help="an unreadable image stops the job (error) or gets no pairs (skip)", choices=ON_BAD_IMAGE
    )
    max_image_pixels: int | None = max_pixels_option()

    def __post_init__(self) -> None:
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad or not self.templates:
            raise ValueError(f"--templates: each needs exactly one '{{}}' for the class name, got {bad or 'none'}")


def bounded(text: str, limit: int) -> str:
    """``text`` when its UTF-8 form fits in ``limit`` bytes, else its start (whole characters), ``~`` and the first
    8 hex digits of its sha256, in at most ``limit`` bytes."""
    data = text.encode()
    if len(data) <= limit:
        return text
    head = data[: max(limit - 9, 0)].decode(errors="ignore")
    return f"{head}~{hashlib.sha256(data).hexdigest()[:8]}"


def pair_name(stem: str, class_name: str) -> str:
    """InstructCV's pair (folder and file prefix) name: ``<image stem>_det_<class name>``, each part bounded (see the
    module docstring)."""
    label = bounded(class_name.replace("/", "_"), CLASS_BYTES)
    return f"{bounded(stem, NAME_BYTES - len('_det_') - len(label.encode()))}_det_{label}"


def class_labels(coco: dict, source: str | Path) -> dict[int, str]:
    """``category id -> name`` of ``coco``; raises ``ValueError`` naming both classes when two give one pair name."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    seen: dict[str, str] = {}
    for name in names.values():
        part = pair_name("", name)
        if part in seen:
            raise ValueError(
                f"{source}: classes {seen[part]!r} and {name!r} give the same InstructCV pair name {part!r}"
            )
        seen[part] = name
    return names


def instruction(templates, seed: int, name: str) -> str:
    """The template chosen for pair ``name`` (seeded by ``seed`` and ``name``), without its class filled in."""
    return templates[random.Random(f"{seed}:{name}").randrange(len(templates))]


def boxes_by_image(opts: ExportOptions, coco: dict) -> dict[int, dict[int, list[list[float]]]]:
    """``{image_id: {category_id: [[x1, y1, x2, y2], ...]}}`` from the ground truth or the detections."""
    if opts.detections is None:
        records = coco.get("annotations", [])
    else:
        records = atomic.read_json(opts.detections)
    images_ = {im["id"] for im in coco["images"]}
    categories = {c["id"] for c in coco["categories"]}
    out: dict[int, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    source = opts.detections or opts.annotations
    for k, r in enumerate(records):
        if r["category_id"] not in categories:
            raise ValueError(f"{source}: record {k} has category_id {r['category_id']}, not a category of "
                             f"{opts.annotations}")  # fmt: skip
        if r["image_id"] not in images_ or (opts.detections is not None and not r["score"] > opts.score_thr):
            continue  # detections of images outside the file, or scoring too low
        x, y, w, h = r["bbox"]
        out[r["image_id"]][r["category_id"]].append([x, y, x + w, y + h])
    return out


def _write_pair(folder: Path, name: str, item: images.ImageItem, image, boxes, text: str) -> None:
    pair = folder / name
    pair.mkdir()
    if item.path.suffix.lower() in (".jpg", ".jpeg"):
        shutil.copyfile(item.path, pair / f"{name}_0.jpg")
    else:
        image.save(pair / f"{name}_0.jpg", format="JPEG", quality=95)
    draw_boxes(image, boxes, BOX_COLOUR, BOX_WIDTH).save(pair / f"{name}_1.jpg", format="JPEG", quality=95)
    (pair / "prompt.json").write_text(json.dumps({"edit": text}))
    (pair / "bbox.json").write_text(json.dumps({"bbox": boxes}))


def run(opts: ExportOptions) -> list[str]:
    """Write the pairs; returns their names (the order of ``seeds.json``: image id, then category id)."""
    coco = atomic.read_json(opts.annotations)
    names = class_labels(coco, opts.annotations)
    found = boxes_by_image(opts, coco)
    policy = images.ImagePolicy(opts.on_bad_image, opts.max_image_pixels)
    opts.out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{opts.out_dir.name}.", suffix=".tmp", dir=opts.out_dir.parent))
    try:
        pairs = []
        for item in images.list_images(opts.annotations, opts.images):
            if not found.get(item.image_id):
                continue
            image = policy.read(item)
            if image is None:
                continue
            for category_id in sorted(found[item.image_id]):
                name = pair_name(item.path.stem, names[category_id])
                text = instruction(opts.templates, opts.seed, name).format(names[category_id])
                _write_pair(tmp, name, item, image, found[item.image_id][category_id], text)
                pairs.append(name)
        (tmp / "seeds.json").write_text(json.dumps([[p, [p]] for p in pairs]))
        tmp.chmod(0o777 & ~atomic.current_umask())
        if opts.out_dir.exists():
            shutil.rmtree(opts.out_dir)
        tmp.rename(opts.out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "%d pairs from %s on %d images (%d skipped) -> %s",
        len(pairs),
        f"detections above {opts.score_thr}" if opts.detections else "ground truth",
        len({p.split("_det_")[0] for p in pairs}),
        len(policy.skipped),
        opts.out_dir,
    )
    return pairs


COMMAND = Command("python -m pipeline.export_instructcv", __doc__, ExportOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
