"""The device a stage runs on (``--device auto``) and the autocast context of its CLIP / detector forward.

torch is imported inside each function: a stage imports this module to build its parser, and torch takes seconds to
import."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; any other name as torch reads it."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """fp16 / bf16 autocast on CUDA; plain float32 elsewhere (and for ``fp32``)."""
    if device.type == "cuda" and precision in ("fp16", "bf16"):
        import torch

        return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
    return contextlib.nullcontext()
