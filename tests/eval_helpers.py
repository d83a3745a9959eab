"""Small generated ground truth, detections, prompt and region files for the evaluation tests."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from tests.conftest import make_coco, make_lvis

# Remapped ids: 0..3 base, 4..5 novel.
NAMES = ("person", "bicycle", "car", "dog", "cat", "knife")
NUM_BASE = 4
CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(NAMES)]

# LVIS-style: frequencies and synonyms; the rare ones are the novel ones (ids 4, 5), as in the OV-LVIS remapping.
FREQUENCIES = ("f", "c", "f", "c", "r", "r")
SYNONYMS = {"dog": ["dog", "hound", "domestic_dog"], "knife": ["knife", "blade"]}
LVIS_CATEGORIES = [
    {"id": i, "name": n, "frequency": f, "synonyms": SYNONYMS.get(n, [n]), "synset": f"{n}.n.01"}
    for i, (n, f) in enumerate(zip(NAMES, FREQUENCIES, strict=True))
]


def _vary_sizes(data: dict, seed: int) -> dict:
    """Give boxes small / medium / large sizes (make_coco draws 40x30 only) so every area range has GT; every box
    inside its 640 x 480 image (masks of boxes outside it would be empty)."""
    rng = np.random.default_rng(seed)
    for a in data["annotations"]:
        s = float(rng.choice([0.5, 1.0, 3.0]))
        x, y, w, h = a["bbox"]
        y = round(0.6 * y, 1)
        a["bbox"] = [x, y, round(w * s, 1), round(h * s, 1)]
        a["area"] = a["bbox"][2] * a["bbox"][3]
        x2, y2 = x + a["bbox"][2], y + a["bbox"][3]
        a["segmentation"] = [[x, y, x2, y, x2, y2, x, y2]]
    return data


def coco_gt(num_images: int = 14, seed: int = 0) -> dict:
    """Remapped COCO-format ground truth over :data:`CATEGORIES` (one crowd box, one empty image)."""
    data = make_coco(CATEGORIES, num_images, seed=seed, per_image=4)
    del data["info"], data["licenses"]
    return _vary_sizes(data, seed)


def lvis_gt(num_images: int = 14, seed: int = 0) -> dict:
    """Remapped LVIS-format ground truth over :data:`LVIS_CATEGORIES` (neg / not-exhaustive lists)."""
    data = make_lvis(LVIS_CATEGORIES, num_images, seed=seed, per_image=4)
    return _vary_sizes(data, seed)


def perfect_detections(gt: dict, cat_ids=None) -> list[dict]:
    """One exact box per non-crowd annotation (of ``cat_ids``, default all), distinct scores."""
    anns = [a for a in gt["annotations"] if not a.get("iscrowd") and (cat_ids is None or a["category_id"] in cat_ids)]
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0 - 1e-3 * i}
        for i, a in enumerate(anns)
    ]


def noisy_detections(gt: dict, seed: int = 1, fp_per_image: int = 3) -> list[dict]:
    """Jittered true boxes (some missed, some with the wrong class), plus random false positives."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = a["bbox"]
        j = rng.normal(0, 0.12, 4) * [w, h, w, h]
        cat = a["category_id"] if rng.random() > 0.15 else int(rng.choice(cat_ids))
        box = [float(x + j[0]), float(y + j[1]), float(max(1.0, w + j[2])), float(max(1.0, h + j[3]))]
        dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": float(rng.random())})
    for im in gt["images"]:
        for _ in range(fp_per_image):
            x, y = rng.uniform(0, 500, 2)
            w, h = rng.uniform(10, 150, 2)
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "score": float(rng.random() * 0.8),
                }
            )
    return dets


def with_masks(gt: dict, dets: list[dict]) -> list[dict]:
    """Detections carrying the RLE mask of their box (as the train stage writes them for mask heads)."""
    import pycocotools.mask as mask_utils

    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    out = copy.deepcopy(dets)
    for d in out:
        h, w = sizes[d["image_id"]]
        x, y, bw, bh = d["bbox"]
        rle = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], h, w))
        d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return out


def write_prompts(path: Path, names: list[str], embeddings: np.ndarray) -> Path:
    import torch

    from pipeline.formats import prompt_file

    prompt_file.save(path, names, torch.as_tensor(embeddings, dtype=torch.float32), {"source": "test"})
    return path


def write_regions(path: Path, gt: dict, embeddings: np.ndarray, ann_ids: list[int] | None = None) -> Path:
    """A REGIONS.npz over the annotations ``ann_ids`` (default: all, in file order) of ``gt``."""
    anns = {a["id"]: a for a in gt["annotations"]}
    ids = list(anns) if ann_ids is None else ann_ids
    np.savez(
        path,
        ann_ids=np.asarray(ids, np.int64),
        image_ids=np.asarray([anns[i]["image_id"] for i in ids], np.int64),
        category_ids=np.asarray([anns[i]["category_id"] for i in ids], np.int64),
        iscrowd=np.asarray([anns[i].get("iscrowd", 0) for i in ids], np.uint8),
        embeddings=np.asarray(embeddings, np.float32),
    )
    return path
