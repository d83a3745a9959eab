"""Generated benchmark inputs: demo images of given sizes with seeded random proposals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline import demo_data
from pipeline.core import atomic
from pipeline.formats import proposal_file


def images_with_proposals(
    tmp: Path, count: int, sizes: Sequence[tuple[int, int]], per_image: int, max_side: float
) -> tuple[Path, Path, Path]:
    """``count`` generated val images cycling through ``sizes`` (w, h), each with ``per_image`` random proposals of
    sides 16..``max_side`` px: (annotation file, image folder, proposals file), all under ``tmp``."""
    demo_data.run(
        demo_data.DemoOptions(
            out_dir=tmp / "demo",
            classes=("red circle", "blue square", "green star"),
            num_train=1,
            num_val=count,
            sizes=tuple(sizes),
        )
    )
    ann, images = tmp / "demo/annotations/instances_val.json", tmp / "demo/images/val"
    rng = np.random.default_rng(0)
    ids, boxes, scores = [], [], []
    for im in atomic.read_json(ann)["images"]:
        xy = rng.uniform(0, [im["width"] * 0.7, im["height"] * 0.7], size=(per_image, 2))
        ids.append(im["id"])
        boxes.append(np.concatenate([xy, xy + rng.uniform(16, max_side, size=(per_image, 2))], 1))
        scores.append(rng.uniform(size=per_image))
    props = tmp / "proposals.h5"
    proposal_file.write(props, ids, boxes, scores)
    return ann, images, props
