"""Annotation stage at real COCO / LVIS size: seconds and images/s for validate + remap + write.

Synthetic files with the real sizes (COCO train2017: 118,287 images, ~860k annotations, 80 categories;
LVIS v1 train: 100,170 images, ~1.27M annotations, 1203 categories) and random boxes; no image files.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import annotations
from pipeline.core import atomic, vocab

COCO_TRAIN = (118_287, 860_001)
LVIS_TRAIN = (100_170, 1_270_141)


def _dataset(num_images: int, num_annotations: int, categories: list[dict], rng: np.random.Generator) -> dict:
    image_ids = rng.integers(1, num_images + 1, size=num_annotations)
    cat_ids = rng.choice([c["id"] for c in categories], size=num_annotations)
    boxes = np.round(rng.uniform(0, 400, size=(num_annotations, 4)), 2).tolist()
    return {
        "images": [
            {
                "id": i,
                "file_name": f"{i:012d}.jpg",
                "width": 640,
                "height": 480,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
            }
            for i in range(1, num_images + 1)
        ],
        "annotations": [
            {"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": b, "area": 1.0, "iscrowd": 0}
            for k, (i, c, b) in enumerate(zip(image_ids, cat_ids, boxes, strict=True))
        ],
        "categories": categories,
    }


def _time(kind: str, data: dict, split: vocab.Split, lvis: bool, tmp: Path) -> dict:
    src = tmp / f"{kind}.json"
    src.write_text(json.dumps(data))
    start = time.perf_counter()
    loaded = annotations.load(src, lvis=lvis)
    out = annotations.remap(loaded, split, lvis=lvis)
    atomic.write_json(tmp / f"{kind}.all.json", out.all)
    atomic.write_json(tmp / f"{kind}.base.json", out.base)
    seconds = time.perf_counter() - start
    return {
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(data["images"]) / seconds),
    }


def run(scale: float = 1.0) -> dict:
    rng = np.random.default_rng(0)
    coco_cats = [{"id": i + 1, "name": n} for i, n in enumerate(vocab.COCO_BASE + vocab.COCO_NOVEL)]
    coco_cats += [{"id": 100 + i, "name": f"dropped_{i}"} for i in range(15)]
    lvis_cats = [{"id": i + 1, "name": f"c{i}", "frequency": "rcf"[i % 3]} for i in range(1203)]
    result: dict = {"benchmark": "annotations", "scale": scale}
    with tempfile.TemporaryDirectory() as tmp:
        n, m = (max(1, int(v * scale)) for v in COCO_TRAIN)
        result["coco_train"] = _time("coco", _dataset(n, m, coco_cats, rng), vocab.coco_split(), False, Path(tmp))
        n, m = (max(1, int(v * scale)) for v in LVIS_TRAIN)
        result["lvis_train"] = _time(
            "lvis", _dataset(n, m, lvis_cats, rng), vocab.lvis_split(lvis_cats), True, Path(tmp)
        )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result
