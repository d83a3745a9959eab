"""A small reference-style data tree for the real-data presets, and the user-supplied files the presets name.

:func:`make_tree` writes, under ``root`` (the presets' ``data_root``)::

    coco/annotations/instances_{train,val}2017.json   COCO 2017 format: the 80 real categories, boxes with polygon
                                                      segmentations, one crowd region (uncompressed RLE) per split
    coco/{train,val}2017/<id:012d>.jpg                real JPEGs of real COCO sizes (640x480, 640x427, 500x375,
                                                      427x640), one filled polygon drawn per annotation
    lvis_v1/annotations/lvis_v1_{train,val}.json      LVIS v1 format: the 1203 real categories (frequency r/c/f,
                                                      image and instance counts), polygons, neg / not-exhaustive
                                                      lists; its images are the COCO images, named by ``coco_url``

Every image holds base and novel classes of both splits (OV-COCO 48/17, OV-LVIS common+frequent / rare), so that
every stage of both presets has boxes to train on and to evaluate. :func:`make_user_files` writes the files a
user supplies, with seeded random weights in their real formats and architectures: the torchvision ResNet-50
state dict, an mmdet Mask R-CNN R50-FPN checkpoint (SoCo's layout), OpenAI's ``ViT-B-32.pt`` (a traced
TorchScript archive of OpenAI's CLIP classes in fp16) and DetPro's ``iou_neg5_ens.pth`` (a bare [1203, 512]
tensor).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.core import vocab

SIZES = ((640, 480), (640, 427), (500, 375), (427, 640))  # (width, height) of real COCO 2017 images
COCO_URL = "http://images.cocodataset.org"
# the files make_user_files writes, relative to its folder (the paths the presets name)
RESNET50 = "pretrained/torchvision/resnet50-0676ba61.pth"
SOCO = "pretrained/soco/soco_star_mask_rcnn_r50_fpn_400e.pth"
CLIP_VIT_B_32 = "pretrained/clip/ViT-B-32.pt"
DETPRO = "pretrained/detpro/iou_neg5_ens.pth"


def _octagon(x: float, y: float, w: float, h: float) -> tuple[list[float], float]:
    """A box with its corners cut by a quarter of its shorter side: (flat polygon, area)."""
    c = 0.25 * min(w, h)
    pts = [(x + c, y), (x + w - c, y), (x + w, y + c), (x + w, y + h - c)]
    pts += [(x + w - c, y + h), (x + c, y + h), (x, y + h - c), (x, y + c)]
    return [round(v, 2) for p in pts for v in p], w * h - 2 * c * c


def _rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a boolean ``[H, W]`` mask (column-major runs, zeros first)."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def _colour(category_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(category_id)
    return tuple(int(v) for v in rng.integers(30, 226, 3))


class _Objects:
    """Objects drawn from base and novel pools in turn, so that a few images show many classes of each."""

    def __init__(self, rng: np.random.Generator, base: Sequence[int], novel: Sequence[int], other: Sequence[int]):
        self.rng = rng
        self.pools = {name: list(rng.permutation(ids)) for name, ids in (("base", base), ("novel", novel))}
        self.other = list(other)
        self.next = {"base": 0, "novel": 0}

    def take(self, pool: str) -> int:
        ids = self.pools[pool]
        cat = ids[self.next[pool] % len(ids)]
        self.next[pool] += 1
        return int(cat)

    def for_image(self, count: int) -> list[int]:
        """``count`` categories: two base, then novel and base alternating, sometimes one outside the split."""
        cats = [self.take("base"), self.take("base")]
        while len(cats) < count:
            cats.append(self.take("novel" if len(cats) % 2 == 0 else "base"))
        if self.other and self.rng.random() < 0.3:
            cats[-1] = int(self.rng.choice(self.other))
        return cats


def _draw_split(
    root: Path, split: str, ids: Sequence[int], objects: _Objects, rng: np.random.Generator, crowd: bool
) -> tuple[list[dict], list[dict]]:
    """Write the JPEGs of one COCO split; return its image records and annotations (COCO format)."""
    folder = root / "coco" / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k, image_id in enumerate(ids):
        width, height = SIZES[k % len(SIZES)]
        name = f"{image_id:012d}.jpg"
        ramp = np.linspace(40, 200, width)[None, :, None] + np.linspace(0, 40, height)[:, None, None]
        noise = rng.normal(0, 12, (height, width, 3))
        pixels = np.clip(ramp + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for cat in objects.for_image(int(rng.integers(4, 7))):
            w, h = rng.uniform(0.15, 0.45) * width, rng.uniform(0.15, 0.45) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            poly, area = _octagon(x, y, w, h)
            draw.polygon(poly, fill=_colour(cat))
            annotations.append(
                {
                    "id": 0,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(area, 2),
                    "segmentation": [poly],
                    "iscrowd": 0,
                }
            )
        if crowd and k == 1:  # a crowd region of people, as COCO marks them: uncompressed RLE, box around it
            mask = np.zeros((height, width), bool)
            y0, x0 = height // 2, width // 8
            mask[y0 : y0 + height // 3, x0 : x0 + width // 3] = True
            annotations.append(
                {
                    "id": 0,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(x0), float(y0), float(width // 3), float(height // 3)],
                    "area": float(mask.sum()),
                    "segmentation": {"counts": _rle_counts(mask), "size": [height, width]},
                    "iscrowd": 1,
                }
            )
        image.save(folder / name, quality=90)
        images.append(
            {
                "license": 1,
                "file_name": name,
                "coco_url": f"{COCO_URL}/{split}2017/{name}",
                "height": height,
                "width": width,
                "date_captured": "2013-11-14 17:02:52",
                "flickr_url": f"http://farm1.staticflickr.com/{name}",
                "id": image_id,
            }
        )
    return images, annotations


def _numbered(annotations: list[dict], start: int) -> list[dict]:
    for i, a in enumerate(annotations):
        a["id"] = start + i
    return annotations


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_tree(
    root: Path,
    coco_categories: Sequence[dict],
    lvis_categories: Sequence[dict],
    num_train: int = 16,
    num_val: int = 8,
    seed: int = 0,
) -> dict[str, int]:
    """Write the tree under ``root`` (module docstring); return the number of images and annotations per file.

    ``coco_categories`` / ``lvis_categories``: the real category lists (``tests/data``); the LVIS ones carry
    ``frequency``. Image ids are distinct 12-digit COCO-style numbers; LVIS train / val hold the COCO train / val
    images.
    """
    rng = np.random.default_rng(seed)
    ids = sorted(int(i) for i in rng.choice(np.arange(1, 581_930), num_train + num_val, replace=False))
    ids = [int(i) for i in rng.permutation(ids)]  # the real files do not list their images in id order
    split_ids = {"train": ids[:num_train], "val": ids[num_train:]}
    by_name = {c["name"]: c["id"] for c in coco_categories}
    coco_objects = _Objects(
        rng,
        [by_name[n] for n in vocab.COCO_BASE],
        [by_name[n] for n in vocab.COCO_NOVEL],
        [c["id"] for c in coco_categories if c["name"] not in set(vocab.COCO_BASE + vocab.COCO_NOVEL)],
    )
    rare = [c["id"] for c in lvis_categories if c["frequency"] == vocab.LVIS_NOVEL_FREQUENCY]
    lvis_objects = _Objects(rng, [c["id"] for c in lvis_categories if c["id"] not in set(rare)], rare, [])
    counts: dict[str, int] = {}
    next_id = {"coco": 1, "lvis": 1}
    lvis_data = {}
    for split in ("train", "val"):
        images, anns = _draw_split(root, split, split_ids[split], coco_objects, rng, crowd=True)
        _write(
            root / f"coco/annotations/instances_{split}2017.json",
            {
                "info": {"description": "generated reference-style COCO 2017 tree", "version": "1.0", "year": 2017},
                "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "CC BY 2.0"}],
                "images": images,
                "annotations": _numbered(anns, next_id["coco"]),
                "categories": [{"supercategory": "object", **c} for c in coco_categories],
            },
        )
        next_id["coco"] += len(anns)
        counts[f"coco_{split}"] = len(images)
        counts[f"coco_{split}_annotations"] = len(anns)
        # LVIS: the same images, LVIS classes on them (boxes drawn from the same geometry stream)
        lvis_images, lvis_anns = [], []
        for im in images:
            width, height = im["width"], im["height"]
            present = []
            for cat in lvis_objects.for_image(int(rng.integers(3, 6))):
                w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
                x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
                poly, area = _octagon(x, y, w, h)
                box = [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]
                lvis_anns.append(
                    {
                        "area": round(area, 2),
                        "id": 0,
                        "segmentation": [poly],
                        "image_id": im["id"],
                        "bbox": box,
                        "category_id": cat,
                    }
                )
                present.append(cat)
            absent = [int(c) for c in rng.choice(rare + [1, 2, 3], 3, replace=False) if c not in present]
            lvis_images.append(
                {
                    "date_captured": im["date_captured"],
                    "neg_category_ids": sorted(absent),
                    "id": im["id"],
                    "license": 1,
                    "height": height,
                    "width": width,
                    "flickr_url": im["flickr_url"],
                    "coco_url": im["coco_url"],
                    "not_exhaustive_category_ids": sorted(set(present))[:1] if len(lvis_images) % 3 == 0 else [],
                }
            )
        lvis_data[split] = (lvis_images, _numbered(lvis_anns, next_id["lvis"]))
        next_id["lvis"] += len(lvis_anns)
        counts[f"lvis_{split}"] = len(lvis_images)
        counts[f"lvis_{split}_annotations"] = len(lvis_anns)
    # category statistics of the training file, as the real files carry them (in both files)
    train_anns = lvis_data["train"][1]
    instances = {c["id"]: 0 for c in lvis_categories}
    images_of: dict[int, set[int]] = {c["id"]: set() for c in lvis_categories}
    for a in train_anns:
        instances[a["category_id"]] += 1
        images_of[a["category_id"]].add(a["image_id"])
    categories = [
        {**c, "image_count": len(images_of[c["id"]]), "instance_count": instances[c["id"]]} for c in lvis_categories
    ]
    for split, (lvis_images, lvis_anns) in lvis_data.items():
        _write(
            root / f"lvis_v1/annotations/lvis_v1_{split}.json",
            {
                "info": {"description": "generated reference-style LVIS v1 tree", "version": "1.0", "year": 2020},
                "annotations": lvis_anns,
                "images": lvis_images,
                "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "CC BY 2.0"}],
                "categories": categories,
            },
        )
    return counts


def save_resnet50(path: Path, seed: int = 0) -> None:
    """torchvision's ResNet-50 state dict (the file torchvision's ImageNet weights come in), seeded weights."""
    import torch
    from torchvision.models import resnet50  # importable on a CPU torch: pipeline/__init__ hooks its compat shim

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = resnet50().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def save_mask_rcnn(path: Path, seed: int = 0) -> None:
    """An mmdet Mask R-CNN R50-FPN checkpoint ``{"state_dict", "meta"}`` (80 COCO classes; mmdet's key names,
    the layout of SoCo's ``soco_star_mask_rcnn_r50_fpn_400e.pth``), seeded weights."""
    import mmdet
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    cfg = Config.fromfile(Path(mmdet.__file__).parent / ".mim/configs/_base_/models/mask-rcnn_r50_fpn.py")
    cfg.model.backbone.init_cfg = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model)
        state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"mmdet_version": "2.11.0", "epoch": 400, "iter": 0, "CLASSES": tuple(str(i) for i in range(80))}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "meta": meta}, path)


def save_clip(path: Path, seed: int = 0) -> None:
    """OpenAI's ``ViT-B-32.pt``: seeded ViT-B-32 weights in OpenAI's CLIP classes, fp16, traced and saved."""
    from pipeline.models.clip import load_clip
    from tests.test_clip import save_openai_layout

    path.parent.mkdir(parents=True, exist_ok=True)
    save_openai_layout(path, load_clip("ViT-B-32", "random", seed=seed))


def save_detpro(path: Path, num_classes: int = 1203, dim: int = 512, seed: int = 0) -> None:
    """DetPro's ``iou_neg5_ens.pth``: a bare ``[1203, 512]`` float32 tensor of unit rows, seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(num_classes, dim, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(emb / emb.norm(dim=1, keepdim=True), path)


def make_user_files(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write the four user-supplied files under ``folder`` at the presets' relative paths; name -> path."""
    paths = {
        "resnet50": folder / RESNET50,
        "soco": folder / SOCO,
        "clip": folder / CLIP_VIT_B_32,
        "detpro": folder / DETPRO,
    }
    save_resnet50(paths["resnet50"], seed)
    save_mask_rcnn(paths["soco"], seed)
    save_clip(paths["clip"], seed)
    save_detpro(paths["detpro"], seed=seed)
    return paths
