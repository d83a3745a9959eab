"""Stage ``prompts``: class-embedding files ``results/prompts/{name}.pth`` (method section 3, MM-OVOD).

Every file is a dict ``names: list[str]``, ``embeddings: float32 [K, D]`` (+ ``scaler``, ``bias`` for learned
prompts) and ``meta: dict[str, str]`` (how it was made, the CLIP weights included); it loads with
``torch.load(path, weights_only=True)``. Consumers pick rows by name with :func:`select`, never by position.
``--dry-run`` (vild, text, vision-avg, ml) keeps every name and shrinks the ensembles and the training
(:mod:`pipeline.core.dry_run`); ``meta["dry_run"]`` records it (multimodal: either input's).

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

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic
from pipeline.core import dry_run as dry
from pipeline.core.device import resolve_device
from pipeline.core.options import Stage, option
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
STAGE = Stage("python -m pipeline.prompts", __doc__)

# ------------------------------------------------------------------------------------------- CLI


def _device(name: str) -> str:
    """``--device``: cpu, cuda, cuda:N or auto, resolved when parsed."""
    return str(resolve_device(name))


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """Options every subcommand has: the prompt file it writes."""

    output: Path = option(help="output prompt file (.pth)")


@dataclass(frozen=True, kw_only=True)
class ClipOptions(OutputOptions):
    """Options of the subcommands that run CLIP."""

    model: str = option(help="CLIP architecture (clip.model)")
    weights: str = option(help="CLIP weights or 'random' (clip.weights)")
    device: str = option("auto", help="cpu, cuda, or auto", type=_device)


@dataclass(frozen=True, kw_only=True)
class VocabularyOptions(ClipOptions):
    """Options of the CLIP subcommands whose vocabulary comes from annotation files."""

    names_from: tuple[Path, ...] = option(
        help="annotation JSONs whose category names form the vocabulary (inputs)", nargs="+"
    )


@dataclass(frozen=True, kw_only=True)
class VildOptions(VocabularyOptions):
    """vild: the 74 ViLD templates, per-template L2 norm, mean."""

    renormalize: bool = option(False, help="L2-normalise the template mean (reference: off)", action="store_true")
    dry_run: bool = option(False, help=f"only the first {dry.TEMPLATES} templates (every name)", action="store_true")


@dataclass(frozen=True, kw_only=True)
class DetproOptions(OutputOptions):
    """detpro: import DetPro's iou_neg5_ens.pth (1203 rows in mmdet LVIS order)."""

    input: Path = option(help="iou_neg5_ens.pth (input)")


@dataclass(frozen=True, kw_only=True)
class TextOptions(VocabularyOptions):
    """text: MM-OVOD text classifier from a descriptions JSON {name: [sentences]}."""

    descriptions: Path = option(help="JSON {name: [sentences]} (input)")
    normalize_first: bool = option(
        False, help="average L2-normalised sentence features (MM-OVOD averages raw ones)", action="store_true"
    )
    dry_run: bool = option(
        False, help=f"only the first {dry.TEMPLATES} sentences of each class (every name)", action="store_true"
    )


@dataclass(frozen=True, kw_only=True)
class VisionAvgOptions(VocabularyOptions):
    """vision-avg: MM-OVOD vision classifier, mean CLIP image feature of exemplar context crops."""

    exemplars: Path = option(help="sampled exemplars JSON (input)")
    categories: Path = option(help="annotation JSON mapping category_id -> name")
    images: Path = option(help="image root of the exemplars' file_name")
    context: float = option(0.4, help="square crop enlargement (MM-OVOD avg: 0.4)")
    num_augs: int = option(5, help="TTA views per exemplar (MM-OVOD: 5)")
    dry_run: bool = option(
        False,
        help=f"{dry.EXEMPLARS} exemplar(s) per class, {dry.EXEMPLAR_VIEWS} view(s) each (every name)",
        action="store_true",
    )


@dataclass(frozen=True, kw_only=True)
class MultimodalOptions(OutputOptions):
    """multimodal: MM-OVOD fusion of a text and a vision file (normalise, sum, normalise)."""

    text: Path = option(help="text prompt file (input)")
    vision: Path = option(help="vision prompt file (input)")


@dataclass(frozen=True, kw_only=True)
class MLOptions(ClipOptions):
    """ml: the learned multi-label prompt fitted on OAKE globals and base labels."""

    train_annotations: Path = option(help="remapped training file with base annotations (.48 / .866 / .base) (input)")
    num_base: int = option(help="number of base classes (ids 0..K-1)")
    globals: tuple[Path, ...] = option(help="OAKE globals shards of train (inputs)", nargs="+")
    val_annotations: Path | None = option(None, help="remapped val file with every class (for novel mAP)")
    val_globals: tuple[Path, ...] = option((), help="OAKE globals shards of val")
    epochs: int = option(4, help="training epochs")
    dry_run: bool = option(
        False, help=f"{dry.ML_EPOCHS} epoch(s) on at most {dry.ML_IMAGES} images (every name)", action="store_true"
    )


@dataclass(frozen=True, kw_only=True)
class SampleExemplarsOptions(OutputOptions):
    """sample-exemplars: MM-OVOD exemplar sampling (K per class, p ~ area)."""

    output: Path = option(help="output exemplars JSON")
    input: Path = option(help="annotation JSON with boxes of every class (input)")
    k: int = option(5, help="exemplars per class", flag="-k")
    seed: int = option(42, help="sampling seed")


Options = (
    VildOptions
    | DetproOptions
    | TextOptions
    | VisionAvgOptions
    | MultimodalOptions
    | MLOptions
    | SampleExemplarsOptions
)


def _clip(opts: ClipOptions):
    from pipeline.models.clip import load_clip

    return load_clip(opts.model, opts.weights, device=_device(opts.device))


@STAGE.command("vild", VildOptions, "ViLD 74-template ensemble")
def run_vild(opts: VildOptions) -> None:
    from pipeline.models.clip import text

    names = vocabulary(opts.names_from)
    clip = _clip(opts)
    templates = vild_templates()[: dry.TEMPLATES if opts.dry_run else None]
    start = time.perf_counter()
    emb = text.vild_embeddings(clip.model, names, renormalize=opts.renormalize, progress=True, templates=templates)
    seconds = time.perf_counter() - start
    log.info(
        "vild: %d names x %d templates in %.1f s (%.1f names/s)",
        len(names),
        len(templates),
        seconds,
        len(names) / seconds,
    )
    meta = {
        "kind": "vild",
        "templates": str(len(templates)),
        "renormalized": str(opts.renormalize),
        "dry_run": str(opts.dry_run),
        **clip.provenance(),
    }
    save(opts.output, names, emb, meta)


@STAGE.command("detpro", DetproOptions, "import DetPro's learned LVIS prompts")
def run_detpro(opts: DetproOptions) -> None:
    names, emb = import_detpro(opts.input)
    save(opts.output, names, emb, {"kind": "detpro", "source": str(opts.input)})


@STAGE.command("text", TextOptions, "MM-OVOD text classifier from descriptions")
def run_text(opts: TextOptions) -> None:
    from pipeline.prompts import mmovod

    names = vocabulary(opts.names_from)
    clip = _clip(opts)
    emb = mmovod.text_classifier(
        clip.model,
        names,
        atomic.read_json(opts.descriptions),
        str(opts.descriptions),
        normalize_first=opts.normalize_first,
        max_sentences=dry.TEMPLATES if opts.dry_run else None,
    )
    meta = {
        "kind": "mmovod_text",
        "descriptions": str(opts.descriptions),
        "normalize_first": str(opts.normalize_first),
        "dry_run": str(opts.dry_run),
        **clip.provenance(),
    }
    save(opts.output, names, emb, meta)


@STAGE.command("vision-avg", VisionAvgOptions, "MM-OVOD vision classifier (exemplar average)")
def run_vision_avg(opts: VisionAvgOptions) -> None:
    from pipeline.prompts import mmovod

    names = vocabulary(opts.names_from)
    clip = _clip(opts)
    exemplars = mmovod.load_exemplars(opts.exemplars, opts.categories)
    num_augs = dry.EXEMPLAR_VIEWS if opts.dry_run else opts.num_augs
    if opts.dry_run:
        exemplars = {name: list(ex)[: dry.EXEMPLARS] for name, ex in exemplars.items()}
    emb = mmovod.vision_avg_classifier(
        clip.model, names, exemplars, opts.images, context=opts.context, num_augs=num_augs
    )
    meta = {
        "kind": "mmovod_vision_avg",
        "exemplars": str(opts.exemplars),
        "context": str(opts.context),
        "num_augs": str(num_augs),
        "dry_run": str(opts.dry_run),
        **clip.provenance(),
    }
    save(opts.output, names, emb, meta)


@STAGE.command("multimodal", MultimodalOptions, "MM-OVOD fusion of a text and a vision file")
def run_multimodal(opts: MultimodalOptions) -> None:
    from pipeline.prompts import mmovod

    a, b = load(opts.text), load(opts.vision)
    names = list(a["names"])
    emb = mmovod.fuse(select(a, names, str(opts.text)), select(b, names, str(opts.vision)))
    dry_run = any(p.get("meta", {}).get("dry_run") == "True" for p in (a, b))  # made of a dry run's file
    meta = {"kind": "mmovod_multimodal", "text": str(opts.text), "vision": str(opts.vision), "dry_run": str(dry_run)}
    save(opts.output, names, emb, meta)


@STAGE.command("ml", MLOptions, "learned multi-label prompt on OAKE globals")
def run_ml(opts: MLOptions) -> None:
    import torch

    from pipeline.formats.feature_cache import ShardReader
    from pipeline.prompts import ml

    train = atomic.read_json(opts.train_annotations)
    cats = sorted(train["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if [c["id"] for c in cats] != list(range(len(cats))) or not 0 < opts.num_base <= len(cats):
        raise PromptError(f"{opts.train_annotations}: expected remapped 0-based base-first ids and 0 < --num-base <= K")
    base, novel = names[: opts.num_base], names[opts.num_base :]
    clip = _clip(opts)
    images, labels, _ = ml.image_labels(train, [ShardReader(p) for p in opts.globals], opts.num_base)
    if opts.dry_run:
        images, labels = images[: dry.ML_IMAGES], labels[: dry.ML_IMAGES]
    ml_opts = ml.MLOptions(epochs=dry.ML_EPOCHS if opts.dry_run else opts.epochs)
    log.info("ml prompt: %d images, %d base classes, %d novel", len(images), len(base), len(novel))
    learner, history = ml.train(clip.model, names, base, images, labels, ml_opts)
    meta = {
        "kind": "ml",
        "epochs": str(ml_opts.epochs),
        "loss_history": ",".join(f"{v:.5f}" for v in history),
        "train_images": str(len(images)),
        "dry_run": str(opts.dry_run),
        **clip.provenance(),
    }
    if opts.val_annotations and opts.val_globals and novel:
        val = atomic.read_json(opts.val_annotations)
        readers = [ShardReader(p) for p in opts.val_globals]
        vi, vl, _ = ml.image_labels(val, readers, len(names))
        meta["val_novel_map"] = f"{100 * ml.mean_ap(learner, names, novel, vi, vl[:, len(base) :]):.2f}"
        log.info("ml prompt: novel mAP on val %s", meta["val_novel_map"])
    with torch.no_grad():
        emb = learner.text_embeddings().cpu()
    save(
        opts.output,
        names,
        emb,
        meta,
        scaler=float(learner.scaler.detach()),
        bias=float(learner.bias.detach()),
        context=learner.ctx.detach(),
    )


@STAGE.command("sample-exemplars", SampleExemplarsOptions, "MM-OVOD exemplar sampling")
def run_sample_exemplars(opts: SampleExemplarsOptions) -> None:
    from pipeline.prompts import mmovod

    atomic.write_json(opts.output, mmovod.sample_exemplars(atomic.read_json(opts.input), k=opts.k, seed=opts.seed))


run, build_parser, main = STAGE.run, STAGE.build_parser, STAGE.main
