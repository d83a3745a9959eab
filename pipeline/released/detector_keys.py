"""The reference's detector layout: how its released checkpoints name this project's tensors.

:data:`KEY_TABLE` renames a tensor between the reference's module names (LutingWang/OADP on mmdet 2.25) and this
project's; :func:`counter_keys` maps the step counters of the reference's loss weights (todd's schedulers) onto the
warm-up schedules here; :func:`reference_buffers` gives the non-persistent buffers the reference's modules register
(mmcv 1.x saves them too): ``roi_head._lambda`` (``ViLDEnsembleRoIHead``'s ensemble exponents, ``[K+1]``) and every
text classifier's ``_embeddings`` (``BaseClassifier``'s prompt rows of every class, ``[K, D]``). :func:`to_reference`
writes a model of this project in that layout. Reading and converting a released file: :mod:`pipeline.released.
detector`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: (reference key prefix, this project's): a tensor is renamed by the longest prefix that starts its key, in either
#: direction. The reference's heads are attributes ``_object_head`` / ``_block_head`` / ``_global_head`` and its text
#: classifiers keep the projection in ``_linear`` and the background row in ``_bg_embedding``; every other module has
#: mmdet's names in both (ResNet ``conv1``, ``bn1``, ``layerN.M.{conv,bn}K``, ``downsample``; FPN
#: ``{lateral,fpn}_convs.N.{conv,bn}``; ``rpn_conv`` / ``rpn_cls`` / ``rpn_reg``; ConvFC heads ``shared_convs.N.{conv,
#: bn}``, ``shared_fcs.N``, ``fc_reg``; FCN mask head ``convs.N.conv``, ``upsample``, ``conv_logits``).
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("backbone.", "backbone."),
    ("neck.", "neck."),
    ("rpn_head.", "rpn_head."),
    ("roi_head.bbox_head.", "roi_head.bbox_head."),
    ("roi_head.bbox_head.fc_cls._linear.", "roi_head.bbox_head.fc_cls.linear."),
    ("roi_head.bbox_head.fc_cls._bg_embedding", "roi_head.bbox_head.fc_cls.background"),
    ("roi_head._object_head.", "roi_head.object_head."),
    ("roi_head._object_head.fc_cls._linear.", "roi_head.object_head.fc_cls.linear."),
    ("roi_head._object_head.fc_cls._bg_embedding", "roi_head.object_head.fc_cls.background"),
    ("roi_head._block_head.", "roi_head.block_head."),
    ("roi_head._block_head.fc_cls._linear.", "roi_head.block_head.fc_cls.linear."),
    ("roi_head._block_head.fc_cls._bg_embedding", "roi_head.block_head.fc_cls.background"),
    ("_global_head._classifier._linear.", "global_head.classifier.linear."),
    ("roi_head.mask_head.", "roi_head.mask_head."),
    # the class embeddings: a non-persistent buffer on both sides (compared, never loaded: detector.check_buffers)
    ("roi_head.bbox_head.fc_cls._embeddings", "roi_head.bbox_head.fc_cls.embeddings"),
    ("roi_head._object_head.fc_cls._embeddings", "roi_head.object_head.fc_cls.embeddings"),
    ("roi_head._block_head.fc_cls._embeddings", "roi_head.block_head.fc_cls.embeddings"),
    ("_global_head._classifier._embeddings", "global_head.classifier.embeddings"),
)
#: the reference's ensemble exponents (``ViLDEnsembleRoIHead``: ``[K+1]``, 2/3 for the bases, 1/3 for the novel
#: classes and the unused background entry); here they are ``roi_head.ensemble`` of the config
LAMBDA = "roi_head._lambda"
EMBEDDINGS = ".embeddings"
EXTRA_STATE = "_extra_state"  # the warm-up counters here (``get_extra_state`` of OADPRoIHead and OADP)


def rename(key: str, table: tuple[tuple[str, str], ...] = KEY_TABLE) -> str | None:
    """``key`` renamed by its longest matching prefix of ``table`` (pairs ``(from, to)``); ``None`` without one."""
    best = max((row for row in table if key.startswith(row[0])), key=lambda row: len(row[0]), default=None)
    return None if best is None else best[1] + key[len(best[0]) :]


REVERSE_TABLE = tuple((here, ref) for ref, here in KEY_TABLE)


def counter_keys(model) -> dict[str, tuple[str, str]]:
    """The reference's loss-weight step counters (0-dim int64 ``_steps`` buffers of todd's schedulers) that a model
    of this structure has, each mapped to ``(extra-state key, schedule)`` here.

    The distiller's losses are ``_distiller._losses.{i}.0`` in the reference's config order: objects, global, blocks,
    block relations (those of the heads the model has); the block and global ASL losses are the heads' ``_loss``."""
    roi_state = f"roi_head.{EXTRA_STATE}"
    has_object = getattr(model.roi_head, "object_head", None) is not None
    has_block = getattr(model.roi_head, "block_head", None) is not None
    has_global = getattr(model, "global_head", None) is not None
    distill = [(roi_state, "object")] if has_object else []
    distill += [(EXTRA_STATE, "mse")] if has_global else []
    distill += [(roi_state, "block"), (roi_state, "relation")] if has_block else []
    out = {f"_distiller._losses.{i}.0._weight._steps": target for i, target in enumerate(distill)}
    if has_block:
        out["roi_head._block_head._loss._weight._steps"] = (roi_state, "block_asl")
    if has_global:
        out["_global_head._loss._weight._steps"] = (EXTRA_STATE, "asl")
    return out


COUNTER = re.compile(r"^(_distiller\._losses\.\d+\.0|.*\._loss)\._weight\._steps$")


def reference_buffers(model) -> dict[str, tuple[str, torch.Tensor]]:
    """The non-persistent buffers the reference's modules of this structure register, each as
    ``reference key -> (this model's module, value)``: ``roi_head._lambda`` ``float32 [K+1]`` (when the RoI head has
    the object head's ensemble) and every text classifier's ``_embeddings`` ``float32 [K, D]``."""
    import torch

    out: dict[str, tuple[str, torch.Tensor]] = {}
    roi = getattr(model, "roi_head", None)
    if getattr(roi, "object_head", None) is not None and hasattr(roi, "ensemble"):
        k = roi.bbox_head.num_classes
        lam = torch.full((k + 1,), 1 / 3)  # the background entry: the reference's constant, never used
        lam[:k] = roi.ensemble["lambda_novel"]
        lam[: roi.num_base] = roi.ensemble["lambda_base"]
        out[LAMBDA] = ("roi_head", lam)
    for name, buffer in model.named_buffers():
        if name.endswith(EMBEDDINGS):
            ref = rename(name, REVERSE_TABLE)
            if ref is not None:
                out[ref] = (name[: -len(EMBEDDINGS)], buffer.detach().float().cpu())
    return out


def prompt_files(cfg_model: Mapping) -> dict[str, str]:
    """``classifier module -> prompt file`` of a filled model config (``fc_cls`` is a head's ``cls_predictor_cfg``;
    the global head's is ``classifier``)."""
    out = {}
    for head in ("bbox_head", "object_head", "block_head"):
        node = (cfg_model.get("roi_head") or {}).get(head) or {}
        if (node.get("cls_predictor_cfg") or {}).get("prompts"):
            out[f"roi_head.{head}.fc_cls"] = str(node["cls_predictor_cfg"]["prompts"])
    node = (cfg_model.get("global_head") or {}).get("classifier") or {}
    if node.get("prompts"):
        out["global_head.classifier"] = str(node["prompts"])
    return out


def to_reference(state_dict: Mapping, model) -> OrderedDict:
    """This project's state dict of ``model`` in the reference's names (:data:`KEY_TABLE` backwards), with the
    warm-up schedules as the reference's 0-dim int64 step counters and the reference's non-persistent buffers
    (:func:`reference_buffers`); ``OrderedDict`` with ``_metadata``, as mmcv saves it."""
    import torch

    out: OrderedDict = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith(EXTRA_STATE):
            continue
        ref = rename(key, REVERSE_TABLE)
        if ref is None:
            raise ValueError(f"{key}: no rule of the key table")
        out[ref] = value.detach().cpu()
    for ref, (state_key, schedule) in counter_keys(model).items():
        out[ref] = torch.tensor(int(state_dict[state_key][schedule]["iteration"]))
    for ref, (_, value) in reference_buffers(model).items():
        out[ref] = value.clone()
    out._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    return out
