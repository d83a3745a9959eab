# The run's configuration: its layers (workflow/config_layers.py) merged, then validated against the schema,
# which fills in its defaults. Fails at parse time, naming the key or file, before any job runs. No rules here.

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import jsonschema
import yaml
from snakemake.logging import logger
from snakemake.utils import validate

_SCHEMA_PATH = workflow.source_path("../schemas/config.schema.yaml")
_spec = importlib.util.spec_from_file_location(
    "config_layers", Path(workflow.basedir) / "workflow" / "config_layers.py"
)
config_layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_layers)


def _check_config(cfg, schema):
    """One line per schema violation, each naming the config key."""
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg),
        key=lambda e: list(e.path),
    )
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.path) or "(top level)"
            lines.append(f"  config key '{key}': {err.message}")
        raise ValueError("invalid configuration:\n" + "\n".join(lines))


def _check_experiments(cfg, configs_dir):
    """Every name in ``experiments`` must be a detector config shipped in ``configs_dir`` (``<name>.py``, the
    ``_base_`` folder excluded); only the file names are read."""
    valid = sorted(
        p.stem for p in Path(configs_dir).glob("*.py") if not p.stem.startswith("_")
    )
    unknown = [e for e in cfg.get("experiments", []) if e not in valid]
    if unknown:
        raise ValueError(
            f"config key 'experiments': unknown experiment(s) {unknown}; valid names (configs in "
            f"{configs_dir}): {valid}"
        )


def _check_demo_split(cfg):
    """With dataset demo: ``demo.classes``, ``demo.base`` and ``demo.novel`` are given, base and novel name classes
    of ``demo.classes`` and share no name."""
    if cfg["dataset"] != "demo":
        return
    demo = cfg["demo"]
    missing = [k for k in ("classes", "base", "novel") if not demo.get(k)]
    if missing:
        raise ValueError(
            f"config key 'demo.{missing[0]}' is required for dataset 'demo' (missing: {missing})"
        )
    classes = demo["classes"]
    for key in ("base", "novel"):
        unknown = [n for n in demo[key] if n not in classes]
        if unknown:
            raise ValueError(
                f"config key 'demo.{key}': {unknown} not among demo.classes; valid names: {classes}"
            )
    both = [n for n in demo["novel"] if n in demo["base"]]
    if both:
        raise ValueError(
            f"config key 'demo.novel': {both} also in demo.base (a class is either base or novel)"
        )


_PROMPT_NEEDS = {
    "detpro": "detpro",
    "mmovod_text": "descriptions",
    "mmovod_multimodal": "descriptions",
}


def _check_dataset_keys(cfg):
    """Keys that one dataset or prompt kind needs: data_root for coco / lvis, the teacher for the demo only, the
    source file of a prompt kind."""
    dataset = cfg["dataset"]
    if dataset in ("coco", "lvis") and not cfg["data_root"]:
        raise ValueError(
            f"config key 'data_root' is required for dataset '{dataset}' "
            "(--config data_root=PATH, a tree with coco/ and lvis_v1/ as in the README)"
        )
    if cfg["clip"]["weights"] == "teacher" and dataset != "demo":
        raise ValueError(
            "config key 'clip.weights': 'teacher' (the demo's CLIP teacher) needs dataset 'demo'; "
            f"for '{dataset}' give real weights, e.g. pretrained/clip/ViT-B-32.pt"
        )
    for kind in cfg["prompts"]["kinds"]:
        key = _PROMPT_NEEDS.get(kind)
        if key and not cfg["prompts"][key]:
            raise ValueError(
                f"config key 'prompts.{key}' is required for prompts kind '{kind}'"
            )


def _check_release_paths(cfg):
    """Every configured release file or folder (oake.import.<kind>, prompts.import.<name>) exists."""
    for section in ("oake", "prompts"):
        for key, value in cfg[section]["import"].items():
            for path in [value] if isinstance(value, str) else value or []:
                if not Path(path).exists():
                    raise ValueError(
                        f"config key '{section}.import.{key}': no such file or folder: {path}"
                    )


def _check_train_import(cfg):
    """Every experiment of train.import is in experiments and its released checkpoint exists."""
    for experiment, path in cfg["train"]["import"].items():
        key = f"config key 'train.import.{experiment}'"
        if experiment not in cfg["experiments"]:
            raise ValueError(
                f"{key}: {experiment!r} is not in experiments {cfg['experiments']} (add it there)"
            )
        if not Path(path).is_file():
            raise ValueError(
                f"{key}: no such file: {path} (relative paths are relative to the working directory "
                f"{Path.cwd()}; the reference README's layout: work_dirs/oadp_ov_coco/iter_32000.pth, "
                "work_dirs/oadp_ov_lvis/epoch_24.pth)"
            )


def trained_experiments(cfg):
    """The experiments that train (those of train.import are converted from a released checkpoint instead)."""
    return [e for e in cfg["experiments"] if e not in cfg["train"]["import"]]


# What each file from elsewhere is and where the reference's README gets it (nothing is downloaded here)
_IMAGENET_R50 = (
    "an ImageNet ResNet state dict (torchvision's resnet50-0676ba61.pth; the reference README: python -c "
    "'import torchvision; torchvision.models.ResNet50_Weights.IMAGENET1K_V1.get_state_dict(True)', then "
    "ln -s ~/.cache/torch/hub/checkpoints/ pretrained/torchvision)"
)
_SOCO = (
    "the reference's SoCo* Mask R-CNN R50-FPN, soco_star_mask_rcnn_r50_fpn_400e.pth (the reference README: "
    "Baidu Netdisk or Google Drive, renamed to that name)"
)
_PRETRAINED_WHAT = {
    "clip.weights": (
        "the CLIP weights (OpenAI's ViT-B-32.pt; the reference README: python -c 'import clip; "
        "clip.load_default()' with its CLIP fork; open_clip files and Hugging Face folders work too)"
    ),
    "prompts.detpro": "DetPro's learned LVIS prompts iou_neg5_ens.pth (the reference README: DetPro's Baidu Netdisk link)",
    "proposals.import": "the reference's OLN proposals of the split (a pickle of [N, 5] arrays)",
    "torchvision": f"the RPN backbone's initial weights, {_IMAGENET_R50}",
    "detector": f"a detector checkpoint the RPN starts from, such as {_SOCO}",
    "train.load_from": f"the detectors' initial weights, {_SOCO}",
    "train.options.load_from": "the detectors' initial weights (an mmdet checkpoint, loaded non-strictly)",
    "train.backbone": f"the detectors' backbone weights, {_IMAGENET_R50}",
}


def pretrained_files(cfg):
    """``{config key: path}`` of every file from elsewhere that the run reads: CLIP weights (a path), DetPro's
    prompts, imported proposal pickles or the RPN's initial weights, and the detectors' initial weights (the
    effective load_from: train.options' over train.load_from; none with init proposals).
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
    if trained_experiments(cfg) and train["init"] != "proposals":
        if train["options"].get("load_from"):
            files["train.options.load_from"] = str(train["options"]["load_from"])
        elif train["init"] == "pretrained" and train["load_from"]:
            files["train.load_from"] = train["load_from"]
        if train["init"] == "pretrained" and train["backbone"]:
            files["train.backbone"] = train["backbone"]
    return files


def _check_pretrained_files(cfg):
    """Every file of :func:`pretrained_files` exists (else one line per missing file: key, path, what it is and
    where it comes from); init pretrained names a file; random starts on real data are logged as warnings.
    """
    train, dataset = cfg["train"], cfg["dataset"]
    if (
        trained_experiments(cfg)
        and train["init"] == "pretrained"
        and not (
            train["load_from"] or train["backbone"] or train["options"].get("load_from")
        )
    ):
        raise ValueError(
            "config key 'train.init': pretrained needs train.load_from or train.backbone "
            "(or say train.init: random)"
        )
    missing = []
    for key, path in pretrained_files(cfg).items():
        if not Path(path).exists():
            if key == "proposals.backbone_init":  # what the file is depends on its kind
                what = _PRETRAINED_WHAT[
                    cfg["proposals"]["backbone_init"].split(":", 1)[0]
                ]
            else:  # proposals.import.<split>: one entry for both splits
                what = (
                    _PRETRAINED_WHAT.get(key) or _PRETRAINED_WHAT[key.rsplit(".", 1)[0]]
                )
            missing.append(f"  config key '{key}': {path}: no such file; {what}")
    if missing:
        raise ValueError(
            f"missing pretrained file(s) (relative paths are relative to the working directory {Path.cwd()}):\n"
            + "\n".join(missing)
        )
    if dataset == "demo":
        return
    if (
        trained_experiments(cfg)
        and train["init"] == "random"
        and not train["options"].get("load_from")
    ):
        logger.warning(
            f"config key 'train.init': random: the detectors of dataset '{dataset}' train from random weights "
            f"(the reference starts them from {train['load_from'] or 'its SoCo checkpoint'})"
        )
    if not cfg["proposals"]["import"] and cfg["proposals"]["backbone_init"] == "random":
        logger.warning(
            f"config key 'proposals.backbone_init': random: the RPN of dataset '{dataset}' trains from random "
            "weights (mmdet's RPN starts from ImageNet: torchvision:pretrained/torchvision/resnet50-0676ba61.pth)"
        )


# dataset custom: the user's COCO-format files, checked before any job runs
_CUSTOM_REQUIRED = (
    "train_annotations",
    "val_annotations",
    "train_images",
    "val_images",
    "novel",
)


def _custom_dataset_module():
    """pipeline/formats/custom_dataset.py without pipeline/__init__.py, which imports torch (seconds at every
    parse): that module and the ones it imports need only the standard library. The package entries it adds to
    sys.modules are removed again, so that a later ``import pipeline`` runs the real package.
    """
    before = set(sys.modules)
    if "pipeline" not in sys.modules:
        package = types.ModuleType("pipeline")
        package.__path__ = [str(Path(workflow.basedir) / "pipeline")]
        sys.modules["pipeline"] = package
    try:
        return importlib.import_module("pipeline.formats.custom_dataset")
    finally:
        for name in set(sys.modules) - before:
            if name == "pipeline" or name.startswith("pipeline."):
                del sys.modules[name]


def _check_custom_dataset(cfg):
    """With dataset custom: the custom keys are given and the files pass every check of
    pipeline/formats/custom_dataset.py (image files exist, boxes inside their images, no empty split, the split's
    names are categories: the closest ones are suggested); returns the split (bases first), else None. A passed
    check is remembered in .snakemake/ of the working directory until a file, a folder or a name changes.
    """
    if cfg["dataset"] != "custom":
        return None
    custom = cfg["custom"]
    missing = [f"custom.{k}" for k in _CUSTOM_REQUIRED if not custom.get(k)]
    if missing:
        raise ValueError(
            f"config key '{missing[0]}' is required for dataset 'custom' (missing: {missing})"
        )
    custom_dataset = _custom_dataset_module()
    try:
        return custom_dataset.check_dataset_cached(
            {s: custom[f"{s}_annotations"] for s in ("train", "val")},
            {s: custom[f"{s}_images"] for s in ("train", "val")},
            custom["novel"],
            custom["base"],
            Path(".snakemake/oadp/custom_dataset_check.json"),
        )
    except ValueError as err:
        raise ValueError(
            f"invalid custom dataset (config key 'custom'): {err}"
        ) from None


def _configure(cli_config):
    """The validated configuration of this run, defaults filled in."""
    with open(_SCHEMA_PATH) as fh:
        schema = yaml.safe_load(fh)
    try:
        cfg = config_layers.layered(
            cli_config,
            Path(workflow.basedir) / "config.yaml",
            Path("config.yaml"),
            schema,
        )
    except config_layers.ConfigError as err:
        raise ValueError(str(err)) from None
    old = cfg.get("oake", {}).get("on_bad_image") if isinstance(cfg.get("oake"), dict) else None
    if old is not None:
        logger.warning("config key 'oake.on_bad_image' is deprecated: write on_bad_image (top level)")
        cfg.setdefault("on_bad_image", old)
    _check_config(cfg, schema)
    validate(cfg, _SCHEMA_PATH)  # fills in the schema's defaults
    _check_experiments(cfg, Path(workflow.basedir) / "pipeline/models/detector/configs")
    _check_demo_split(cfg)
    _check_dataset_keys(cfg)
    _check_release_paths(cfg)
    _check_train_import(cfg)
    _check_pretrained_files(cfg)
    return cfg


_configured = _configure(config)
config.clear()
config.update(_configured)
PRETRAINED = pretrained_files(
    config
)  # {config key: path} of the files from elsewhere: rule inputs too
CUSTOM_SPLIT = _check_custom_dataset(config)
