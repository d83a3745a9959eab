"""DetPro's learned LVIS prompts (``iou_neg5_ens.pth``: a bare ``[1203, D]`` tensor, rows in mmdet's LVIS v1
class order) read as names and rows for a prompt file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.formats.prompt_file import PromptError

if TYPE_CHECKING:
    import torch


def lvis_mmdet_names() -> list[str]:
    """mmdet's LVIS v1 class list (the DetPro row order) with the LVIS json typo restored (method 3.2)."""
    from mmdet.datasets import LVISV1Dataset

    return [
        ("speaker_(stero_equipment)" if n == "speaker_(stereo_equipment)" else n)
        for n in LVISV1Dataset.METAINFO["classes"]
    ]


def import_detpro(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Read DetPro's tensor (tensors only, ``weights_only``) -> (names, ``[1203, D]`` float32)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise PromptError(f"{path}: not a readable DetPro tensor ({type(exc).__name__}: {exc})") from exc
    names = lvis_mmdet_names()
    if not isinstance(obj, torch.Tensor) or obj.ndim != 2 or obj.shape[0] != len(names):
        shape = tuple(obj.shape) if isinstance(obj, torch.Tensor) else type(obj).__name__
        raise PromptError(f"{path}: expected a [{len(names)}, D] tensor (DetPro iou_neg5_ens.pth), got {shape}")
    return names, obj.float()
