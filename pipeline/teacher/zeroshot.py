"""The teacher's zero-shot evaluation: generalized accuracy (argmax over ALL classes), base and novel.

:func:`zero_shot` scores a loaded CLIP on the held-out captioned crops and on objects cut from generated scenes
(:func:`scene_objects`: ``(image, boxes [n, 4] xyxy, categories)`` per scene; cut as :func:`context_square` s of
each context factor, their mean, and OAKE's object-aware embedding) against two text classifiers ``[K, D]``
(:func:`class_text_embeddings`: ViLD template ensemble and ``"a photo of a {}"``), and lists the class pairs the
teacher tells apart worst (:func:`similar_pairs`). Returns the report dict of the stage's ``--zeroshot`` JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.teacher.data import caption_test_set, crop_uint8, normalize
from pipeline.teacher.options import TeacherOptions
from pipeline.world.draw import DemoOptions, draw_image

PHOTO_TEMPLATE = "a photo of a {}"
EVAL_BATCH = 128


def _shift_inside(lo: float, side: float, size: int) -> float:
    if side >= size:
        return (size - side) / 2
    return min(max(lo, 0.0), size - side)


def context_square(box: Sequence[float], factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box of the square of side ``factor`` x the long side of ``box`` (xyxy) around its centre, shifted
    inside the image where it fits (as OAKE shifts its squares)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = factor * max(x2 - x1, y2 - y1)
    sx = _shift_inside((x1 + x2 - side) / 2, side, width)
    sy = _shift_inside((y1 + y2 - side) / 2, side, height)
    return tuple(int(round(v)) for v in (sx, sy, sx + side, sy + side))


def scene_objects(opts: TeacherOptions) -> list[tuple[Image.Image, np.ndarray, list[int]]]:
    """Evaluation scenes drawn by :func:`pipeline.world.draw.draw_image` (split ``teacher``, 256 x 256, 3-7 objects,
    no crowd): ``(image, boxes [n, 4] xyxy, categories)`` per scene."""
    dopts = DemoOptions(
        out_dir=Path("."),
        classes=opts.classes,
        novel=opts.novel,
        sizes=((256, 256),),
        objects=(3, 7),
        crowd_prob=0.0,
        seed=opts.seed,
    )
    out = []
    for i in range(opts.scenes):
        img, objects = draw_image(dopts, "teacher", i)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (o.bbox for o in objects)], np.float32).reshape(-1, 4)
        out.append((Image.fromarray(img), boxes, [o.category for o in objects]))
    return out


def class_text_embeddings(model, classes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Unit-norm class embeddings ``[K, D]``: ``vild`` (mean over the 74 ViLD templates, renormalised, as the
    prompts stage builds them) and ``photo`` (``"a photo of a {name}"``)."""
    from pipeline.models.clip import text

    return {
        "vild": text.vild_embeddings(model, list(classes), renormalize=True),
        "photo": text.encode_text(model, [PHOTO_TEMPLATE.format(c) for c in classes]),
    }


@torch.inference_mode()
def image_embeddings(model, crops: torch.Tensor) -> torch.Tensor:
    """``[N, 3, 224, 224]`` uint8 -> ``[N, D]`` unit-norm, the standard forward (as OAKE blocks)."""
    from pipeline.models.clip import vision

    if len(crops) == 0:
        return torch.zeros(0, model.visual.output_dim)
    return torch.cat(
        [
            vision.encode_standard(model.visual, normalize(crops[i : i + EVAL_BATCH]))
            for i in range(0, len(crops), EVAL_BATCH)
        ]
    )


def accuracy(emb: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor, novel_ids: set[int]) -> dict:
    """Generalized zero-shot accuracy: argmax cosine over ALL classes, split by the true class being base / novel."""
    pred = (emb @ classifier.T).argmax(1) if len(emb) else labels
    hit = (pred == labels).float()
    is_novel = torch.tensor([int(c) in novel_ids for c in labels.tolist()], dtype=torch.bool)

    def mean(mask: torch.Tensor) -> float | None:
        return round(float(hit[mask].mean()), 4) if bool(mask.any()) else None

    return {
        "base": mean(~is_novel),
        "novel": mean(is_novel),
        "all": mean(torch.ones_like(is_novel)),
        "n_base": int((~is_novel).sum()),
        "n_novel": int(is_novel.sum()),
    }


def similar_pairs(
    text_emb: torch.Tensor, image_emb: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], top: int = 8
) -> list[dict]:
    """The class pairs the teacher tells apart worst: cosine of their text embeddings and of their held-out image
    centroids (renormalised mean crop embedding), highest image cosine first. A pair near 1 on the image side is
    one the image tower does not separate (no student distilled from it can); near 1 on the text side only, one
    its text tower does not."""
    K = len(classes)
    centroids = torch.stack(
        [
            image_emb[labels == k].mean(0) if bool((labels == k).any()) else torch.zeros(image_emb.shape[1])
            for k in range(K)
        ]
    )
    image_cos = F.normalize(centroids, dim=-1) @ F.normalize(centroids, dim=-1).T
    text_cos = text_emb @ text_emb.T
    pairs = [
        {
            "classes": [classes[i], classes[j]],
            "image": round(float(image_cos[i, j]), 4),
            "text": round(float(text_cos[i, j]), 4),
        }
        for i in range(K)
        for j in range(i + 1, K)
    ]
    return sorted(pairs, key=lambda p: (-p["image"], -p["text"]))[:top]


def _context_key(factor: float) -> str:
    return f"context_{factor:g}x"


def zero_shot(model, opts: TeacherOptions, captions: Path | None = None) -> dict:
    """The teacher's zero-shot report (see the module docstring)."""
    from pipeline.models.clip import preprocess, vision

    classes = list(opts.classes)
    novel_ids = {i for i, c in enumerate(classes) if c in opts.novel}
    texts = class_text_embeddings(model, classes)
    crops, labels = caption_test_set(opts, captions)
    crop_emb = image_embeddings(model, crops)
    report: dict = {
        "chance": round(1.0 / len(classes), 4),
        "classifier": {
            "vild": "mean of the 74 ViLD templates over the class name, renormalised (the prompts stage's vild)",
            "photo": f"'{PHOTO_TEMPLATE}'",
        },
        "crops": {kind: accuracy(crop_emb, labels, t, novel_ids) for kind, t in texts.items()},
    }
    hits = ((crop_emb @ texts["vild"].T).argmax(1) == labels).float()
    report["per_class_crops_vild"] = {c: round(float(hits[labels == i].mean()), 4) for i, c in enumerate(classes)}
    report["similar_pairs"] = similar_pairs(texts["vild"], crop_emb, labels, classes)

    scenes = scene_objects(opts)
    scene_labels = torch.tensor([c for _, _, cats in scenes for c in cats], dtype=torch.int64)
    variants: dict[str, torch.Tensor] = {}
    for factor in opts.contexts:
        cut = [
            crop_uint8(np.asarray(img.crop(context_square(box, factor, *img.size))))
            for img, boxes, _ in scenes
            for box in boxes
        ]
        variants[_context_key(factor)] = image_embeddings(model, torch.stack(cut))
    if len(opts.contexts) > 1:
        mean = torch.stack([variants[_context_key(f)] for f in opts.contexts]).mean(0)
        variants["context_mean"] = F.normalize(mean, dim=-1)
    encoder = vision.ObjectAwareEncoder(model.visual)
    rows = []
    with torch.inference_mode():
        for img, boxes, _ in scenes:
            obj_crops, masks = preprocess.object_inputs(img, boxes, encoder.grid)
            rows.append(encoder(normalize(obj_crops), masks))
    variants["oake_object"] = torch.cat(rows)
    report["scenes"] = {
        "images": len(scenes),
        "objects": len(scene_labels),
        "crops": {
            name: {kind: accuracy(emb, scene_labels, t, novel_ids) for kind, t in texts.items()}
            for name, emb in variants.items()
        },
        "how": "scene objects (demo_data.draw_image, split 'teacher', 256 x 256, 3-7 objects, no crowd) cut as "
        "squares of side factor x the box's long side, shifted inside; context_mean: the renormalised mean of the "
        "context embeddings; oake_object: OAKE's object-aware embedding of the adaptive square sqrt(8wh)",
    }
    return report
