"""The teacher's caption data: the seeded training stream and the held-out captioned crops.

* :func:`crop_uint8`: an ``[S, S, 3]`` uint8 crop -> ``[3, size, size]`` uint8 (CLIP's standard preprocessing);
  :func:`normalize`: ``[B, 3, H, W]`` uint8 -> CLIP-normalised float32;
* :class:`CaptionBatches`: the endless training stream of ``(images [B, 3, 224 / f, 224 / f], tokens [B, L],
  categories [B])``, crops drawn by :func:`pipeline.world.captions.draw_caption_crop`;
* :func:`caption_test_set` / :func:`read_caption_set`: the held-out crops ``[N, 3, 224, 224]`` uint8 and their
  categories ``[N]``, drawn here or read from the generator's ``captions_test.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.teacher.options import TeacherError, TeacherOptions
from pipeline.world.captions import draw_caption_crop

AUG_STREAM = 17  # seed stream of the rotation / mirror augmentation


def crop_uint8(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """An ``[S, S, 3]`` crop through CLIP's standard preprocessing (bicubic to ``size``), ``[3, size, size]`` uint8."""
    from pipeline.models.clip import preprocess

    return preprocess.standard_uint8(Image.fromarray(image), size)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    from pipeline.models.clip import preprocess

    return preprocess.normalize_uint8(batch)


class CaptionBatches(IterableDataset):
    """The endless, seeded training stream: batch ``b`` holds captioned crops ``(b // repeat) * B ...`` of the
    ``train`` caption split, rotated by ``k * 90`` degrees and maybe mirrored (``k``, mirror seeded by ``b``).

    Yields ``(images [B, 3, 224, 224] float32 normalised, tokens [B, L] int64, categories [B] int64)``.
    """

    def __init__(self, opts: TeacherOptions) -> None:
        self.opts = opts
        self.specs = opts.specs

    def batch(self, b: int, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from pipeline.models.clip import text

        o = self.opts
        source = b // o.repeat
        if cache is not None and cache.get("source") == source:
            images, tokens, categories = cache["data"]
        else:
            crops = [
                draw_caption_crop(self.specs, o.seed, "train", source * o.batch_size + i, o.captions)
                for i in range(o.batch_size)
            ]
            images = torch.stack([crop_uint8(c.image, 224 // o.downsample) for c in crops])
            tokens = text.tokenize([c.caption for c in crops])
            categories = torch.tensor([c.category for c in crops], dtype=torch.int64)
            if cache is not None:
                cache.update(source=source, data=(images, tokens, categories))
        rng = np.random.default_rng([o.seed, AUG_STREAM, b])
        images = torch.rot90(images, int(rng.integers(4)), (2, 3))
        if rng.random() < 0.5:
            images = images.flip(3)
        return normalize(images), tokens, categories

    def __iter__(self):
        if get_worker_info() is not None:
            torch.set_num_threads(1)
        cache: dict = {}
        b = 0
        while True:
            yield self.batch(b, cache)
            b += 1


def caption_test_set(opts: TeacherOptions, captions: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out captioned crops (``test`` caption split): ``[N, 3, 224, 224]`` uint8 and categories ``[N]``.

    ``captions``: the generator's ``captions/captions_test.json`` (``pipeline.demo_data --captions-per-class``);
    its crops are read from ``test/`` beside it. Without it, ``eval_per_class`` crops per class are drawn here.
    """
    if captions is not None:
        return read_caption_set(captions, opts.classes)
    crops = [
        draw_caption_crop(opts.specs, opts.seed, "test", i, opts.captions)
        for i in range(opts.eval_per_class * len(opts.classes))
    ]
    return torch.stack([crop_uint8(c.image) for c in crops]), torch.tensor([c.category for c in crops])


def read_caption_set(captions: Path, classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's captioned crops listed in ``captions`` (JSON records ``file_name``, ``caption``,
    ``category``; images in the folder named like the split beside it)."""
    import json

    try:
        records = json.loads(Path(captions).read_text())
    except (OSError, ValueError) as exc:
        raise TeacherError(f"teacher --captions-test {captions}: cannot read ({exc})") from exc
    folder = Path(captions).parent / Path(captions).stem.removeprefix("captions_")
    index = {c: i for i, c in enumerate(classes)}
    images, labels = [], []
    for record in records:
        name = record.get("category") if isinstance(record, dict) else None
        if name not in index:
            raise TeacherError(f"teacher --captions-test {captions}: category {name!r} is not among --classes")
        path = folder / str(record.get("file_name"))
        try:
            with Image.open(path) as im:
                images.append(crop_uint8(np.asarray(im.convert("RGB"))))
        except OSError as exc:
            raise TeacherError(f"teacher --captions-test: image {path} cannot be read ({exc})") from exc
        labels.append(index[name])
    if not images:
        raise TeacherError(f"teacher --captions-test {captions}: no crops listed")
    missing = sorted(set(classes) - {r["category"] for r in records})
    if missing:
        raise TeacherError(f"teacher --captions-test {captions}: no crops of {missing}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)
