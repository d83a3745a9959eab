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
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.core import atomic, cli
from pipeline.core.device import resolve_device
from pipeline.core.templates import vild_templates
from pipeline.formats.annotation_file import vocabulary
from pipeline.formats.prompt_file import PromptError, load, save, select
from pipeline.prompts.detpro import import_detpro, lvis_mmdet_names

__all__ = [
    "PromptError",
    "build_parser",
    "import_detpro",
    "load",
    "lvis_mmdet_names",
    "main",
    "save",
    "select",
    "vild_templates",
    "vocabulary",
]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- inputs


# ------------------------------------------------------------------------------------------- CLI


def _clip(args: argparse.Namespace):
    from pipeline.models.clip import load_clip

    return load_clip(args.model, args.weights, device=args.device)


def _cmd_vild(args: argparse.Namespace) -> None:
    from pipeline.models.clip import text

    names = vocabulary(args.names_from)
    clip = _clip(args)
    start = time.perf_counter()
    emb = text.vild_embeddings(clip.model, names, renormalize=args.renormalize)
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
    from pipeline.prompts import mmovod

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
    from pipeline.prompts import mmovod

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
    from pipeline.prompts import mmovod

    a, b = load(args.text), load(args.vision)
    names = list(a["names"])
    emb = mmovod.fuse(select(a, names, str(args.text)), select(b, names, str(args.vision)))
    save(args.output, names, emb, {"kind": "mmovod_multimodal", "text": str(args.text), "vision": str(args.vision)})


def _cmd_ml(args: argparse.Namespace) -> None:
    from pipeline.formats.feature_cache import ShardReader
    from pipeline.prompts import ml

    train = atomic.read_json(args.train_annotations)
    cats = sorted(train["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if [c["id"] for c in cats] != list(range(len(cats))) or not 0 < args.num_base <= len(cats):
        raise PromptError(f"{args.train_annotations}: expected remapped 0-based base-first ids and 0 < --num-base <= K")
    base, novel = names[: args.num_base], names[args.num_base :]
    clip = _clip(args)
    images, labels, _ = ml.image_labels(train, [ShardReader(p) for p in args.globals], args.num_base)
    opts = ml.MLOptions(epochs=args.epochs)
    log.info("ml prompt: %d images, %d base classes, %d novel", len(images), len(base), len(novel))
    learner, history = ml.train(clip.model, names, base, images, labels, opts)
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
        vi, vl, _ = ml.image_labels(val, readers, len(names))
        meta["val_novel_map"] = f"{100 * ml.mean_ap(learner, names, novel, vi, vl[:, len(base) :]):.2f}"
        log.info("ml prompt: novel mAP on val %s", meta["val_novel_map"])
    with torch.no_grad():
        emb = learner.text_embeddings().cpu()
    save(args.output, names, emb, meta, scaler=float(learner.scaler.detach()), bias=float(learner.bias.detach()))


def _cmd_sample_exemplars(args: argparse.Namespace) -> None:
    from pipeline.prompts import mmovod

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
            p.add_argument(
                "--device", type=lambda name: str(resolve_device(name)), default="auto", help="cpu, cuda, or auto"
            )

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
