"""Compatibility shims: torchvision on the CPU torch (applied by :mod:`pipeline.core.torchvision_hook` right before
torchvision is first imported), lvis-api on numpy 2 and mmengine's checkpoints under ``weights_only``.

torchvision on CPU torch
    The only torchvision release that pins torch 2.13.0 (0.28.0) is a CUDA build. On the CPU torch its compiled
    ops cannot load, and ``import torchvision`` then fails in ``torchvision._meta_registrations`` with
    "operator torchvision::nms does not exist"; open_clip, timm, transformers' ``CLIPModel`` and mmengine's
    ``Runner`` all import torchvision and fail with it. :func:`ensure_torchvision_ops` probes torchvision's own
    extension first and stands aside when it loads (CUDA machines, matching builds). Only when it cannot load
    does it define the ``torchvision::nms`` (and ``qnms``) operators with a pure-torch kernel and let
    ``torchvision.ops.nms`` use it. ``roi_align`` needs nothing: torchvision falls back to its Python
    implementation by itself.

lvis-api on numpy 2
    lvis 0.5.3 uses ``np.float`` (removed in numpy 1.24). :func:`patch_lvis_numpy` gives that one module a numpy
    namespace with the alias instead of patching numpy for everybody.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import pickle
import sys
import types

import torch

log = logging.getLogger(__name__)

#: True when this module registered the pure-torch ``torchvision::nms`` kernel in this process.
FALLBACK_ACTIVE = False
_fallback_lib: torch.library.Library | None = None


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS in pure torch, with torchvision's semantics.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        iou_threshold: boxes with IoU strictly greater than this with a kept box are dropped.

    Returns:
        ``[K]`` int64 indices of kept boxes, in decreasing score order.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    b = boxes[order]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    # Blocks of rows keep memory at O(N * block) for the many-thousand-box case.
    block = 2048
    for start in range(0, len(order), block):
        stop = min(start + block, len(order))
        lt = torch.maximum(b[start:stop, None, :2], b[None, :, :2])
        rb = torch.minimum(b[start:stop, None, 2:], b[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        iou = inter / (areas[start:stop, None] + areas[None, :] - inter)
        over = iou > iou_threshold
        for i in range(start, stop):
            if suppressed[i]:
                continue
            keep.append(i)
            row = over[i - start].clone()
            row[: i + 1] = False
            suppressed |= row
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _nms_kernel(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if dets.is_quantized:
        dets, scores = dets.dequantize(), scores.dequantize()
    return nms_reference(dets, scores, iou_threshold)


def _torchvision_ops_registered() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - resolves only when the schema exists
    except (AttributeError, RuntimeError):
        return False
    return True


def _probe_native_torchvision() -> bool:
    """Try loading torchvision's compiled ops the way torchvision does, without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for lib in sorted(glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd"))):
            try:
                torch.ops.load_library(lib)
                return True
            except (OSError, RuntimeError) as exc:
                log.debug("torchvision ops %s do not load here: %s", lib, exc)
    return False


def ensure_torchvision_ops(force_fallback: bool = False) -> bool:
    """Make ``import torchvision`` work on the CPU torch; stand aside where torchvision's ops load.

    Args:
        force_fallback: register the pure-torch kernel without probing (tests only).

    Returns:
        True when the pure-torch fallback is active in this process.
    """
    global FALLBACK_ACTIVE, _fallback_lib
    if FALLBACK_ACTIVE:
        return True
    if not force_fallback and (_torchvision_ops_registered() or _probe_native_torchvision()):
        return False
    if "torchvision" in sys.modules and not _torchvision_ops_registered():
        log.warning("torchvision was imported before pipeline.core.compat; its nms may not work on this torch")
    lib = torch.library.Library("torchvision", "DEF")
    # torchvision registers fake kernels for both at import; qnms (quantized boxes) shares the kernel.
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.impl(op, _nms_kernel, "CompositeExplicitAutograd")
    _fallback_lib = lib
    FALLBACK_ACTIVE = True
    if "torchvision" in sys.modules:
        after_torchvision_import()
    log.debug("torchvision compiled ops unavailable: using the pure-torch torchvision::nms kernel")
    return True


def after_torchvision_import() -> None:
    """With the fallback kernel active: ``torchvision.ops.nms`` asserts that *its* extension loaded; the operator
    it calls exists, so the assertion is lifted (torchvision must be imported already)."""
    if not FALLBACK_ACTIVE:
        return
    import torchvision.ops.boxes as tv_boxes

    tv_boxes._assert_has_ops = lambda: None


def patch_lvis_numpy() -> None:
    """Give ``lvis.eval`` a numpy namespace that still has ``np.float`` (lvis 0.5.3 on numpy 2)."""
    import lvis.eval as lvis_eval
    import numpy as np

    if getattr(lvis_eval.np, "float", None) is float:
        return
    shim = types.ModuleType("numpy_with_float")
    shim.__dict__.update(np.__dict__)
    shim.float = float
    lvis_eval.np = shim


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default, which mmengine 0.10 inherits) read the
    checkpoints mmengine itself writes, through an explicit allow-list of the plain-data classes they hold (the
    message hub's history buffers, numpy arrays, scalars and dtypes in metadata). Nothing else is allowed."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = getattr(np, "_core", None) or np.core
    safe: list = [HistoryBuffer, np.ndarray, np.dtype, multiarray.multiarray._reconstruct, multiarray.multiarray.scalar]
    safe += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    # HistoryBuffer pickles its statistics registry as getattr(HistoryBuffer, "min") etc.: a general getattr
    # would reach anything, so the name resolves to a getattr limited to exactly those four functions.
    safe.append((_history_buffer_getattr, "builtins.getattr"))
    torch.serialization.add_safe_globals(safe)


_HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def _history_buffer_getattr(obj, name: str):
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({obj!r}, {name!r}): not on the allow-list")
