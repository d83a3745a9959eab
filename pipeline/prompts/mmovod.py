"""MM-OVOD classifiers (Kaul et al., ICML 2023; RELATED_SYSTEMS.md section 1) on the project's CLIP.

* text: per class, CLIP text features of its descriptions, averaged (raw features, as MM-OVOD; or normalised
  first with ``normalize_first``), exported L2-normalised.
* vision "avg": per class, K exemplar boxes -> square context crops -> seeded TTA views -> CLIP image features
  (raw) -> mean, exported L2-normalised.
* multimodal: L2-normalise both, sum, L2-normalise.

Exports are unit-norm rows because OADP's classifiers divide cosine scores by a temperature (0.007 / 0.01):
MM-OVOD's raw rows (norms up to ~117) would not work there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.core import atomic, images
from pipeline.core.progress import track
from pipeline.formats.prompt_file import PromptError
from pipeline.models.clip import preprocess, text

log = logging.getLogger(__name__)

TTA_SEED = 100_000
MIN_EXEMPLAR_AREA = 32 * 32


def _description_key(name: str, descriptions: Mapping[str, Sequence[str]]) -> str | None:
    for key in (name, name.replace("_", " ")):
        if key in descriptions:
            return key
    return None


def text_classifier(
    model,
    names: Sequence[str],
    descriptions: Mapping[str, Sequence[str]],
    source: str,
    normalize_first: bool = False,
    max_sentences: int | None = None,
) -> torch.Tensor:
    """``[K, D]`` unit rows from ``descriptions`` (keys: the class name, or the name with ``_`` -> space), each
    from the first ``max_sentences`` sentences of its class (``None``: all)."""
    if not isinstance(descriptions, Mapping):
        raise PromptError(f"{source}: expected a JSON object {{class name: [sentences]}}")
    keys = {n: _description_key(n, descriptions) for n in names}
    missing = [n for n, k in keys.items() if k is None or not descriptions[k]]
    if missing:
        raise PromptError(f"{source}: no descriptions for classes {missing[:20]}")
    rows = []
    for name in track(names, "text classifier", unit="class", logger=log):
        sentences = list(descriptions[keys[name]])[:max_sentences]
        feats = text.encode_text(model, sentences, normalize=normalize_first)
        rows.append(feats.mean(0))
    return F.normalize(torch.stack(rows), dim=-1)


def sample_exemplars(data: Mapping, k: int = 5, seed: int = 42, min_area: float = MIN_EXEMPLAR_AREA) -> list[list]:
    """MM-OVOD sampling: per category (sorted ids), ``k`` boxes of area > ``min_area`` without replacement,
    probability proportional to area, a fresh ``default_rng(seed)`` per class. Crowd boxes are skipped.

    Returns:
        a list (one entry per category, sorted by id) of lists of annotation dicts with ``file_name`` added.
    """
    files = {im["id"]: images.image_relpath(im) for im in data["images"]}
    out = []
    for cat in sorted(data["categories"], key=lambda c: c["id"]):
        pool = [
            a
            for a in data["annotations"]
            if a["category_id"] == cat["id"] and not a.get("iscrowd") and a["bbox"][2] * a["bbox"][3] > min_area
        ]
        rng = np.random.default_rng(seed)
        if pool:
            area = np.array([a["bbox"][2] * a["bbox"][3] for a in pool], dtype=np.float64)
            pick = rng.choice(len(pool), size=min(k, len(pool)), replace=False, p=area / area.sum())
            chosen = [dict(pool[i], file_name=files[pool[i]["image_id"]], area=float(area[i])) for i in pick]
        else:
            chosen = []
            log.warning("no exemplar box for category %r", cat["name"])
        out.append(chosen)
    return out


def load_exemplars(path: str | Path, categories: str | Path) -> dict[str, list[dict]]:
    """Read sampled exemplars (MM-OVOD list, sorted category-id order, or ``{name: [...]}``) -> name -> list."""
    data = atomic.read_json(path)
    if isinstance(data, dict):
        return data
    cats = sorted(atomic.read_json(categories)["categories"], key=lambda c: c["id"])
    if len(data) != len(cats):
        raise PromptError(f"{path}: {len(data)} exemplar lists for {len(cats)} categories in {categories}")
    return {c["name"]: list(ex) for c, ex in zip(cats, data, strict=True)}


def context_crop(image: Image.Image, bbox: Sequence[float], context: float) -> Image.Image:
    """Square crop of side ``max(w, h) * (1 + context)`` centred on the box, clipped to the image."""
    x, y, w, h = bbox
    side = max(w, h) * (1 + context)
    cx, cy = x + w / 2, y + h / 2
    x1, y1 = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
    x2, y2 = min(float(image.width), cx + side / 2), min(float(image.height), cy + side / 2)
    return image.crop((round(x1), round(y1), round(x2), round(y2)))


def _tta():
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(896, scale=(0.8, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.2, 0.2, 0.2, 0.05)], p=0.8),
        ]
    )


def exemplar_views(image: Image.Image, ex: Mapping, context: float, num_augs: int) -> list[Image.Image]:
    crop = image if ex.get("dataset") == "imagenet21k" else context_crop(image, ex["bbox"], context)
    if num_augs <= 0:
        return [crop]
    tta = _tta()
    return [tta(crop) for _ in range(num_augs)]


@torch.inference_mode()
def vision_avg_classifier(
    model,
    names: Sequence[str],
    exemplars: Mapping[str, Sequence[Mapping]],
    image_root: str | Path,
    context: float = 0.4,
    num_augs: int = 5,
) -> torch.Tensor:
    """``[K, D]`` unit rows: mean raw CLIP image feature of each class's exemplar views."""
    missing = [n for n in names if not exemplars.get(n)]
    if missing:
        raise PromptError(f"exemplars: none for classes {missing[:20]}")
    device = model.visual.conv1.weight.device
    rows = []
    for c, name in enumerate(track(names, "exemplars", unit="class", logger=log)):
        views = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TTA_SEED + num_augs + c)
            for ex in exemplars[name]:
                path = Path(image_root) / ex["file_name"]
                try:
                    image = images.decode(path)
                except images.UnreadableImage as exc:
                    raise PromptError(f"{path}: cannot read exemplar image of class {name!r} ({exc.reason})") from exc
                views += exemplar_views(image, ex, context, num_augs)
        batch = torch.stack([preprocess.standard(v) for v in views]).to(device)
        rows.append(model.encode_image(batch).float().mean(0).cpu())
    return F.normalize(torch.stack(rows), dim=-1)


def fuse(text_rows: torch.Tensor, vision_rows: torch.Tensor) -> torch.Tensor:
    """MM-OVOD ``norm_feat_sum_norm``: normalise each, sum, normalise."""
    return F.normalize(F.normalize(text_rows, dim=-1) + F.normalize(vision_rows, dim=-1), dim=-1)
