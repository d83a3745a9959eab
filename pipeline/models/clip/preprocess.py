"""CLIP image preprocessing without torchvision transforms: the exact standard and "adaptive" recipes.

Standard (method section 5.2): bicubic resize of the short side to 224, centre crop 224, RGB -> [0, 1], CLIP
normalise. Adaptive: no resize, no crop (globals run at full resolution).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipeline.models.clip import geometry

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``[3, H, W]`` float32, CLIP-normalised."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (t - mean) / std


def resize_short_side(image: Image.Image, size: int = 224) -> Image.Image:
    """Bicubic resize so that the short side is ``size`` (torchvision ``Resize(size)`` rounding)."""
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return image.resize((new_w, new_h), Image.BICUBIC)


def center_crop(image: Image.Image, size: int = 224) -> Image.Image:
    """Centre crop (torchvision ``CenterCrop`` rounding)."""
    w, h = image.size
    left = int(round((w - size) / 2.0))
    top = int(round((h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def standard(image: Image.Image, size: int = 224) -> torch.Tensor:
    """The standard CLIP preprocessing -> ``[3, size, size]``."""
    return to_tensor(center_crop(resize_short_side(image, size), size))


def adaptive(image: Image.Image) -> torch.Tensor:
    """The fork's adaptive preprocessing (no resize / crop) -> ``[3, H, W]``."""
    return to_tensor(image)


def standard_uint8(image: Image.Image, size: int = 224) -> torch.Tensor:
    """Standard preprocessing up to the crop, as ``[3, size, size]`` uint8 (4x less to move between processes)."""
    return pil_to_uint8(center_crop(resize_short_side(image, size), size))


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``[3, H, W]`` uint8."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def normalize_uint8(batch: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 -> float32 CLIP-normalised (on the batch's device)."""
    mean = torch.tensor(CLIP_MEAN, device=batch.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, device=batch.device).view(3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def object_inputs(
    image: Image.Image, boxes: np.ndarray, grid: int, expand_mode: str = "adaptive"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 3, 224, 224]`` uint8 crops and ``[N, grid, grid]`` bool foreground masks for ``boxes [N, 4]``: the
    region :func:`geometry.object_crop` gives for ``expand_mode``; a square goes through the standard
    preprocessing, the ``rectangle`` is resized (bicubic) to 224 x 224 without keeping its aspect ratio."""
    crops, masks = [], []
    for box in boxes:
        region = geometry.object_crop(box, *image.size, expand_mode)
        crop = image.crop(geometry.crop_box(region))  # PIL pads outside the image with black
        if expand_mode == "rectangle":
            crops.append(pil_to_uint8(crop.resize((224, 224), Image.BICUBIC)))
        else:
            crops.append(standard_uint8(crop))
        masks.append(torch.from_numpy(geometry.foreground_mask(box, region, grid)))
    if not crops:
        return torch.zeros(0, 3, 224, 224, dtype=torch.uint8), torch.zeros(0, grid, grid, dtype=torch.bool)
    return torch.stack(crops), torch.stack(masks)
