"""Stage ``prompts``: class-embedding files ``results/prompts/{name}.pth`` (method section 3, MM-OVOD).

Every file is a dict ``names: list[str]``, ``embeddings: float32 [K, D]`` (+ ``scaler``, ``bias`` for learned
prompts) and ``meta: dict[str, str]`` (how it was made, the CLIP weights included); it loads with
``torch.load(path, weights_only=True)``. Consumers pick rows by name with :func:`select`, never by position.

Subcommands::

    vild        the 74 ViLD templates, names inserted raw, per-template L2 norm, mean (not renormalised unless
                --renormalize); names = sorted union of the vocabularies of the given annotation files
    detpro      import DetPro's iou_neg5_ens.pth (1203 rows in mmdet LVIS order), LVIS name typo restored
    text        MM-OVOD text classifier from a descriptions JSON {name: [sentences]}
    vision-avg  MM-OVOD vision classifier: exemplar context crops, seeded TTA, mean of CLIP image features
    multimodal  MM-OVOD fusion of two files: normalise, sum, normalise
    ml          the learned multi-label prompt (CoOp context, scaler, bias) fitted on OAKE globals and base labels
    sample-exemplars  MM-OVOD exemplar sampling from an annotation file (K per class, p ~ area, seed 42)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline import atomic, cli
from pipeline.templates import vild_templates  # noqa: F401  (re-exported: prompts.vild_templates)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- file format


class PromptError(ValueError):
    """A prompt file or input that cannot be used (the message names the file and the names)."""


def save(
    path: str | Path,
    names: Sequence[str],
    embeddings: torch.Tensor,
    meta: Mapping[str, str],
    scaler: float | None = None,
    bias: float | None = None,
) -> None:
    """Write a prompt file atomically (tensors, strings and floats only: ``weights_only`` loadable)."""
    embeddings = embeddings.detach().float().cpu().contiguous()
    if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
        raise PromptError(f"{path}: {len(names)} names but embeddings of shape {tuple(embeddings.shape)}")
    if len(set(names)) != len(names):
        raise PromptError(f"{path}: repeated names")
    if not torch.isfinite(embeddings).all():
        raise PromptError(f"{path}: embeddings are not finite")
    obj: dict = {"names": list(names), "embeddings": embeddings, "meta": {k: str(v) for k, v in meta.items()}}
    if scaler is not None:
        obj["scaler"], obj["bias"] = float(scaler), float(bias)
    with atomic.atomic_path(path, suffix=".pth") as tmp:
        torch.save(obj, tmp)


def load(path: str | Path) -> dict:
    """Load a prompt file safely (``weights_only=True``) and check its structure."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise PromptError(f"{path}: not a readable prompt file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or "names" not in obj or "embeddings" not in obj:
        raise PromptError(f"{path}: expected a dict with 'names' and 'embeddings'")
    if len(obj["names"]) != obj["embeddings"].shape[0]:
        raise PromptError(f"{path}: {len(obj['names'])} names for {obj['embeddings'].shape[0]} rows")
    return obj


def select(prompts: Mapping, names: Sequence[str], source: str = "prompt file") -> torch.Tensor:
    """Rows of ``prompts`` for ``names``, in that order: ``[len(names), D]``. Missing names are an error."""
    index = {n: i for i, n in enumerate(prompts["names"])}
    missing = [n for n in names if n not in index]
    if missing:
        raise PromptError(f"{source}: names missing: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    return prompts["embeddings"][[index[n] for n in names]]


def vocabulary(files: Iterable[str | Path]) -> list[str]:
    """Sorted union of the category names of annotation files (COCO or LVIS format)."""
    names: set[str] = set()
    for f in files:
        cats = atomic.read_json(f).get("categories")
        if not isinstance(cats, list):
            raise PromptError(f"{f}: no 'categories' list")
        names.update(c["name"] for c in cats)
    return sorted(names)


# ------------------------------------------------------------------------------------------- builders


def vild_embeddings(model, names: Sequence[str], renormalize: bool = False, batch_size: int = 1024) -> torch.Tensor:
    """``[K, D]``: per template, encode all names (L2-normalised rows); mean over the 74 templates.

    Faithful default: the mean is not renormalised (norm < 1); ``renormalize=True`` makes rows unit-norm.
    """
    from pipeline.clip import text

    total = None
    templates = vild_templates()
    for template in templates:
        emb = text.encode_text(model, [template.format(n) for n in names], batch_size=batch_size)
        total = emb if total is None else total + emb
    mean = total / len(templates)
    return F.normalize(mean, dim=-1) if renormalize else mean


def lvis_mmdet_names() -> list[str]:
    """mmdet's LVIS v1 class list (the DetPro row order) with the LVIS json typo restored (method 3.2)."""
    from mmdet.datasets import LVISV1Dataset

    return [
        ("speaker_(stero_equipment)" if n == "speaker_(stereo_equipment)" else n)
        for n in LVISV1Dataset.METAINFO["classes"]
    ]


def import_detpro(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Read DetPro's tensor (tensors only, ``weights_only``) -> (names, ``[1203, D]`` float32)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise PromptError(f"{path}: not a readable DetPro tensor ({type(exc).__name__}: {exc})") from exc
    names = lvis_mmdet_names()
    if not isinstance(obj, torch.Tensor) or obj.ndim != 2 or obj.shape[0] != len(names):
        shape = tuple(obj.shape) if isinstance(obj, torch.Tensor) else type(obj).__name__
        raise PromptError(f"{path}: expected a [{len(names)}, D] tensor (DetPro iou_neg5_ens.pth), got {shape}")
    return names, obj.float()


# ------------------------------------------------------------------------------------------- CLI


def _clip(args: argparse.Namespace):
    from pipeline.clip import load_clip

    return load_clip(args.model, args.weights, device=args.device)


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _cmd_vild(args: argparse.Namespace) -> None:
    names = vocabulary(args.names_from)
    clip = _clip(args)
    start = time.perf_counter()
    emb = vild_embeddings(clip.model, names, renormalize=args.renormalize)
    seconds = time.perf_counter() - start
    log.info(
        "vild: %d names x %d templates in %.1f s (%.1f names/s)",
        len(names),
        len(vild_templates()),
        seconds,
        len(names) / seconds,
    )
    meta = {
        "kind": "vild",
        "templates": str(len(vild_templates())),
        "renormalized": str(args.renormalize),
        **clip.provenance(),
    }
    save(args.output, names, emb, meta)


def _cmd_detpro(args: argparse.Namespace) -> None:
    names, emb = import_detpro(args.input)
    save(args.output, names, emb, {"kind": "detpro", "source": str(args.input)})


def _cmd_text(args: argparse.Namespace) -> None:
    from pipeline import mmovod

    names = vocabulary(args.names_from)
    clip = _clip(args)
    emb = mmovod.text_classifier(
        clip.model,
        names,
        atomic.read_json(args.descriptions),
        str(args.descriptions),
        normalize_first=args.normalize_first,
    )
    meta = {
        "kind": "mmovod_text",
        "descriptions": str(args.descriptions),
        "normalize_first": str(args.normalize_first),
        **clip.provenance(),
    }
    save(args.output, names, emb, meta)


def _cmd_vision_avg(args: argparse.Namespace) -> None:
    from pipeline import mmovod

    names = vocabulary(args.names_from)
    clip = _clip(args)
    emb = mmovod.vision_avg_classifier(
        clip.model,
        names,
        mmovod.load_exemplars(args.exemplars, args.categories),
        args.images,
        context=args.context,
        num_augs=args.num_augs,
    )
    meta = {
        "kind": "mmovod_vision_avg",
        "exemplars": str(args.exemplars),
        "context": str(args.context),
        "num_augs": str(args.num_augs),
        **clip.provenance(),
    }
    save(args.output, names, emb, meta)


def _cmd_multimodal(args: argparse.Namespace) -> None:
    from pipeline import mmovod

    a, b = load(args.text), load(args.vision)
    names = list(a["names"])
    emb = mmovod.fuse(select(a, names, str(args.text)), select(b, names, str(args.vision)))
    save(args.output, names, emb, {"kind": "mmovod_multimodal", "text": str(args.text), "vision": str(args.vision)})


def _cmd_ml(args: argparse.Namespace) -> None:
    from pipeline import ml_prompt
    from pipeline.oake.cache import ShardReader

    train = atomic.read_json(args.train_annotations)
    cats = sorted(train["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if [c["id"] for c in cats] != list(range(len(cats))) or not 0 < args.num_base <= len(cats):
        raise PromptError(f"{args.train_annotations}: expected remapped 0-based base-first ids and 0 < --num-base <= K")
    base, novel = names[: args.num_base], names[args.num_base :]
    clip = _clip(args)
    images, labels, _ = ml_prompt.image_labels(train, [ShardReader(p) for p in args.globals], args.num_base)
    opts = ml_prompt.MLOptions(epochs=args.epochs)
    log.info("ml prompt: %d images, %d base classes, %d novel", len(images), len(base), len(novel))
    learner, history = ml_prompt.train(clip.model, names, base, images, labels, opts)
    meta = {
        "kind": "ml",
        "epochs": str(opts.epochs),
        "loss_history": ",".join(f"{v:.5f}" for v in history),
        "train_images": str(len(images)),
        **clip.provenance(),
    }
    if args.val_annotations and args.val_globals and novel:
        val = atomic.read_json(args.val_annotations)
        readers = [ShardReader(p) for p in args.val_globals]
        vi, vl, _ = ml_prompt.image_labels(val, readers, len(names))
        meta["val_novel_map"] = f"{100 * ml_prompt.mean_ap(learner, names, novel, vi, vl[:, len(base) :]):.2f}"
        log.info("ml prompt: novel mAP on val %s", meta["val_novel_map"])
    with torch.no_grad():
        emb = learner.text_embeddings().cpu()
    save(args.output, names, emb, meta, scaler=float(learner.scaler.detach()), bias=float(learner.bias.detach()))


def _cmd_sample_exemplars(args: argparse.Namespace) -> None:
    from pipeline import mmovod

    atomic.write_json(args.output, mmovod.sample_exemplars(atomic.read_json(args.input), k=args.k, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.prompts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_log_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, model: bool = True, names: bool = True) -> None:
        p.add_argument("--output", type=Path, required=True, help="output prompt file (.pth)")
        if names:
            p.add_argument(
                "--names-from",
                type=Path,
                nargs="+",
                required=True,
                help="annotation JSONs whose category names form the vocabulary (inputs)",
            )
        if model:
            p.add_argument("--model", required=True, help="CLIP architecture (clip.model)")
            p.add_argument("--weights", required=True, help="CLIP weights or 'random' (clip.weights)")
            p.add_argument("--device", type=_device, default="auto", help="cpu, cuda, or auto")

    p = sub.add_parser("vild", help="ViLD 74-template ensemble")
    common(p)
    p.add_argument("--renormalize", action="store_true", help="L2-normalise the template mean (reference: off)")
    p.set_defaults(func=_cmd_vild)
    p = sub.add_parser("detpro", help="import DetPro's learned LVIS prompts")
    common(p, model=False, names=False)
    p.add_argument("--input", type=Path, required=True, help="iou_neg5_ens.pth (input)")
    p.set_defaults(func=_cmd_detpro)
    p = sub.add_parser("text", help="MM-OVOD text classifier from descriptions")
    common(p)
    p.add_argument("--descriptions", type=Path, required=True, help="JSON {name: [sentences]} (input)")
    p.add_argument(
        "--normalize-first",
        action="store_true",
        help="average L2-normalised sentence features (MM-OVOD averages raw ones)",
    )
    p.set_defaults(func=_cmd_text)
    p = sub.add_parser("vision-avg", help="MM-OVOD vision classifier (exemplar average)")
    common(p)
    p.add_argument("--exemplars", type=Path, required=True, help="sampled exemplars JSON (input)")
    p.add_argument("--categories", type=Path, required=True, help="annotation JSON mapping category_id -> name")
    p.add_argument("--images", type=Path, required=True, help="image root of the exemplars' file_name")
    p.add_argument("--context", type=float, default=0.4, help="square crop enlargement (MM-OVOD avg: 0.4)")
    p.add_argument("--num-augs", type=int, default=5, help="TTA views per exemplar (MM-OVOD: 5)")
    p.set_defaults(func=_cmd_vision_avg)
    p = sub.add_parser("multimodal", help="MM-OVOD fusion of a text and a vision file")
    common(p, model=False, names=False)
    p.add_argument("--text", type=Path, required=True, help="text prompt file (input)")
    p.add_argument("--vision", type=Path, required=True, help="vision prompt file (input)")
    p.set_defaults(func=_cmd_multimodal)
    p = sub.add_parser("ml", help="learned multi-label prompt on OAKE globals")
    common(p, names=False)
    p.add_argument(
        "--train-annotations",
        type=Path,
        required=True,
        help="remapped training file with base annotations (.48 / .866 / .base) (input)",
    )
    p.add_argument("--num-base", type=int, required=True, help="number of base classes (ids 0..K-1)")
    p.add_argument("--globals", type=Path, nargs="+", required=True, help="OAKE globals shards of train (inputs)")
    p.add_argument("--val-annotations", type=Path, help="remapped val file with every class (for novel mAP)")
    p.add_argument("--val-globals", type=Path, nargs="*", default=[], help="OAKE globals shards of val")
    p.add_argument("--epochs", type=int, default=4)
    p.set_defaults(func=_cmd_ml)
    p = sub.add_parser("sample-exemplars", help="MM-OVOD exemplar sampling")
    common(p, model=False, names=False)
    p.add_argument("--input", type=Path, required=True, help="annotation JSON with boxes of every class (input)")
    p.add_argument("-k", type=int, default=5, help="exemplars per class")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=_cmd_sample_exemplars)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    cli.dispatch(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
