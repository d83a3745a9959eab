"""The files from elsewhere that a run reads (CLIP weights, DetPro's prompts, the reference's proposal pickles, the
RPN's and the detectors' initial weights): which config key names each, and a check that each exists, saying what
the file is and where the reference's README gets it (nothing is downloaded here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

_IMAGENET_R50 = (
    "an ImageNet ResNet state dict (torchvision's resnet50-0676ba61.pth; the reference README: python -c "
    "'import torchvision; torchvision.models.ResNet50_Weights.IMAGENET1K_V1.get_state_dict(True)', then "
    "ln -s ~/.cache/torch/hub/checkpoints/ pretrained/torchvision)"
)
_SOCO = (
    "the reference's SoCo* Mask R-CNN R50-FPN, soco_star_mask_rcnn_r50_fpn_400e.pth (the reference README: "
    "Baidu Netdisk or Google Drive, renamed to that name)"
)
WHAT = {
    "clip.weights": (
        "the CLIP weights (OpenAI's ViT-B-32.pt; the reference README: python -c 'import clip; "
        "clip.load_default()' with its CLIP fork; open_clip files and Hugging Face folders work too)"
    ),
    "prompts.detpro": (
        "DetPro's learned LVIS prompts iou_neg5_ens.pth (the reference README: DetPro's Baidu Netdisk link)"
    ),
    "proposals.import": "the reference's OLN proposals of the split (a pickle of [N, 5] arrays)",
    "torchvision": f"the RPN backbone's initial weights, {_IMAGENET_R50}",
    "detector": f"a detector checkpoint the RPN starts from, such as {_SOCO}",
    "train.load_from": f"the detectors' initial weights, {_SOCO}",
    "train.options.load_from": "the detectors' initial weights (an mmdet checkpoint, loaded non-strictly)",
    "train.backbone": f"the detectors' backbone weights, {_IMAGENET_R50}",
}


def pretrained_files(cfg: Mapping, trained: list[str]) -> dict[str, str]:
    """``{config key: path}`` of every file from elsewhere that the run reads: CLIP weights (a path), DetPro's
    prompts, imported proposal pickles or the RPN's initial weights, and the detectors' initial weights (the
    effective load_from: train.options' over train.load_from; none with init proposals). ``trained``: the
    experiments that train (not converted from a released checkpoint).
    """
    files = {}
    if cfg["clip"]["weights"] not in ("teacher", "random"):
        files["clip.weights"] = cfg["clip"]["weights"]
    if "detpro" in cfg["prompts"]["kinds"] and cfg["prompts"]["detpro"]:
        files["prompts.detpro"] = cfg["prompts"]["detpro"]
    proposals = cfg["proposals"]
    if proposals["import"]:
        for split, path in proposals["import"].items():
            files[f"proposals.import.{split}"] = path
    elif proposals["backbone_init"] != "random":
        files["proposals.backbone_init"] = proposals["backbone_init"].split(":", 1)[1]
    train = cfg["train"]
    if trained and train["init"] != "proposals":
        if train["options"].get("load_from"):
            files["train.options.load_from"] = str(train["options"]["load_from"])
        elif train["init"] == "pretrained" and train["load_from"]:
            files["train.load_from"] = train["load_from"]
        if train["init"] == "pretrained" and train["backbone"]:
            files["train.backbone"] = train["backbone"]
    return files


def check_pretrained_files(cfg: Mapping, trained: list[str]) -> list[str]:
    """Every file of :func:`pretrained_files` exists (else ValueError with one line per missing file: key, path,
    what it is and where it comes from) and ``train.init: pretrained`` names a file; returns the warnings of random
    starts on real data."""
    train, dataset = cfg["train"], cfg["dataset"]
    if (
        trained
        and train["init"] == "pretrained"
        and not (train["load_from"] or train["backbone"] or train["options"].get("load_from"))
    ):
        raise ValueError(
            "config key 'train.init': pretrained needs train.load_from or train.backbone (or say train.init: random)"
        )
    missing = []
    for key, path in pretrained_files(cfg, trained).items():
        if not Path(path).exists():
            if key == "proposals.backbone_init":  # what the file is depends on its kind
                what = WHAT[cfg["proposals"]["backbone_init"].split(":", 1)[0]]
            else:  # proposals.import.<split>: one entry for both splits
                what = WHAT.get(key) or WHAT[key.rsplit(".", 1)[0]]
            missing.append(f"  config key '{key}': {path}: no such file; {what}")
    if missing:
        raise ValueError(
            f"missing pretrained file(s) (relative paths are relative to the working directory {Path.cwd()}):\n"
            + "\n".join(missing)
        )
    warnings = []
    if dataset == "demo":
        return warnings
    if trained and train["init"] == "random" and not train["options"].get("load_from"):
        warnings.append(
            f"config key 'train.init': random: the detectors of dataset '{dataset}' train from random weights "
            f"(the reference starts them from {train['load_from'] or 'its SoCo checkpoint'})"
        )
    if not cfg["proposals"]["import"] and cfg["proposals"]["backbone_init"] == "random":
        warnings.append(
            f"config key 'proposals.backbone_init': random: the RPN of dataset '{dataset}' trains from random "
            "weights (mmdet's RPN starts from ImageNet: torchvision:pretrained/torchvision/resnet50-0676ba61.pth)"
        )
    return warnings
