"""A trained detector from ``final.pth``, with its own classes or another vocabulary, and its forward pass on one
image.

``final.pth`` (its format: :mod:`pipeline.models.detector.checkpoint`) holds ``state_dict`` and ``meta`` with the
resolved ``config`` and ``prompts``: ``{prompt file path: {names, embeddings[, scaler, bias, context, meta]}}``, the
classifiers' text embeddings (non-persistent buffers, not in the state dict). :func:`load_detector` rebuilds the model
from them; with ``vocabulary`` every text classifier (bbox, object, block and global heads) gets the rows of that
vocabulary instead, and the class counts follow. The weights never depend on the number of classes (class-agnostic box
regression and masks, text classifiers with a learned projection and background row), so the same state dict
loads. :func:`detect_image` runs the test-time forward pass on one image of the config's test pipeline;
:func:`predict` is the one loop over images that ``train predict`` and ``detect`` share: each image read under the
stage's bad-image policy (:class:`pipeline.core.images.ImagePolicy`), through the test pipeline, forward, with a
progress line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.images import ImageItem, ImagePolicy
from pipeline.core.progress import track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vocabulary:
    """Classes a detector scores, in place of those it was trained with.

    Attributes:
        names: the class names, bases first: ``names[:num_base]`` get the ensemble's base exponent, the others
            its novel one.
        num_base: how many leading names are base classes.
        prompts: ``prompts(stored) -> prompt dict for names`` (``names``, ``embeddings [K, D]``[, ``scaler``,
            ``bias``]), called once per stored prompt file with its stored dict (which says how it was made).
    """

    names: tuple[str, ...]
    num_base: int
    prompts: Callable[[Mapping], Mapping]


def trained_classes(cfg) -> tuple[list[str], int]:
    """The class names a filled config's classifiers score (bases first) and the number of base classes."""
    from pipeline.models.detector.config import classifier_nodes

    node = classifier_nodes(cfg)[0]
    return list(node["names"]), int(node["num_base"])


def _set_vocabulary(cfg, stored: Mapping[str, Mapping], vocabulary: Vocabulary) -> None:
    from pipeline.models.detector.config import classifier_nodes, set_class_counts

    set_class_counts(cfg, len(vocabulary.names), vocabulary.num_base)
    new: dict[str, Mapping] = {}
    for node in classifier_nodes(cfg):
        path = str(node["prompts"])
        if path not in new:
            new[path] = vocabulary.prompts(stored[path])
        node.update(prompts=new[path], names=list(vocabulary.names))


def load_detector(checkpoint: str | Path, device: str = "cpu", vocabulary: Vocabulary | None = None):
    """A trained detector from ``final.pth`` in eval mode, and its config and meta: ``(model, cfg, meta)``.

    The classifiers get the prompt embeddings stored with the weights, or ``vocabulary``'s."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.checkpoint import read_checkpoint
    from pipeline.models.detector.config import classifier_nodes

    register_modules()
    ckpt = read_checkpoint(checkpoint)
    cfg = Config(ckpt["meta"]["config"])
    stored = ckpt["meta"].get("prompts")
    if vocabulary is not None:
        if stored is None:
            raise ValueError(f"{checkpoint}: no stored prompt embeddings (older final.pth): no other vocabulary")
        _set_vocabulary(cfg, stored, vocabulary)
    elif stored is None:
        log.warning("%s: no stored prompt embeddings (older final.pth): re-reading the prompt files", checkpoint)
    else:
        for node in classifier_nodes(cfg):
            node["prompts"] = stored[str(node["prompts"])]
    model = MODELS.build(cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), cfg, ckpt["meta"]


LOADERS = ("LoadImageFromFile", "ReadImage")


def test_pipeline(steps: Sequence[Mapping]) -> Callable[[ImageItem, Any], dict]:
    """An mmcv test pipeline config (first step an image loader: ``LoadImageFromFile``, as older ``final.pth``
    files store it, or ``ReadImage``) as a function ``(item, image) -> data`` of an :class:`ImageItem` and its
    decoded RGB ``PIL.Image`` (:meth:`ImagePolicy.read`: the project's decoder and pixel limit): the loader's
    fields from ``image``, then the other steps."""
    import numpy as np
    from mmcv.transforms import Compose

    from pipeline.models.detector import transforms  # noqa: F401  (registers ReadImage for the configs)

    if not steps or steps[0].get("type") not in LOADERS:
        first = steps[0].get("type") if steps else None
        raise ValueError(f"test pipeline starts with {first!r}, expected one of {list(LOADERS)}")
    rest = Compose([dict(s) for s in steps[1:]])

    def run(item: ImageItem, image) -> dict:
        img = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # BGR, as mmcv's loaders
        shape = img.shape[:2]
        return rest(dict(img=img, img_shape=shape, ori_shape=shape, img_path=str(item.path), img_id=item.image_id))

    return run


@dataclass(frozen=True)
class Prediction:
    """One image's test-time output: the decoded RGB ``image`` (``PIL.Image``, what the detector saw), its
    ``instances`` (mmdet ``InstanceData``: ``bboxes`` xyxy in original pixels, ``scores``, ``labels``[, ``masks``]),
    the FPN ``feats`` and the preprocessed ``samples``."""

    item: ImageItem
    image: Any
    instances: Any
    feats: Any
    samples: Any


def predict(
    model, cfg, items: Sequence[ImageItem], policy: ImagePolicy, desc: str, logger: logging.Logger | None = None
) -> Iterator[Prediction]:
    """The detector ``model`` (eval mode) over ``items`` with the test pipeline of ``cfg``: one
    :class:`Prediction` per readable image, in order; an unreadable one follows ``policy`` (raised under ``error``,
    left out under ``skip``). Progress lines begin with ``desc`` (the stage's name) and go to ``logger``. The
    forward pass runs under ``torch.inference_mode``: use the features for more tensors inside it too."""
    import torch

    pipeline = test_pipeline(cfg.test_pipeline)
    for item in track(items, desc, unit="img", logger=logger or log):
        image = policy.read(item)
        if image is None:
            continue
        with torch.inference_mode():
            out, feats, samples = detect_image(model, pipeline(item, image))
        yield Prediction(item, image, out, feats, samples)


def detect_image(model, data: Mapping):
    """The test-time forward pass on one image of the test pipeline (``{"inputs", "data_samples"}``):
    ``(detections, features, samples)``: mmdet's ``InstanceData`` (``bboxes`` xyxy in original pixels, ``scores``,
    ``labels``[, ``masks``]), the FPN features and the preprocessed data samples."""
    batch = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
    feats = model.extract_feat(batch["inputs"])
    samples = batch["data_samples"]
    proposals = model.rpn_head.predict(feats, samples, rescale=False)
    out = model.roi_head.predict(feats, proposals, samples, rescale=True)[0]
    return out, feats, samples


def base_first(names: Sequence[str], base: Sequence[str]) -> tuple[list[str], int, list[int]]:
    """``names`` reordered bases first (``base``: the names that count as base), both groups in their given order:
    ``(ordered, num_base, position)`` with ``position[i]`` the index in ``names`` of ``ordered[i]``."""
    known = set(base)
    position = [i for i, n in enumerate(names) if n in known] + [i for i, n in enumerate(names) if n not in known]
    return [names[i] for i in position], sum(n in known for n in names), position
