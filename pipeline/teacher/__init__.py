"""Stage ``teacher``: a tiny CLIP pretrained on the demo's captioned crops, so that open vocabulary
measurably works in the demo world.

CLIP saw everything: the captions cover every class, base and novel (``"a photo of a red star"``, shape synonyms
too); the detector later sees only base boxes, as in the real setting. The model is a real open_clip ``CLIP`` of
the named config ``OADP-Teacher-ViT-4H`` (:mod:`pipeline.models.clip.configs`): a class-token ViT with the
ViT-B/32 layout (patch 32 at 224 px), so every OAKE variant (any resolution, half-stride object-aware) runs on it
unchanged.

Training: image-text InfoNCE with a learnable logit scale (clamped at 100), symmetric over images and captions;
captions of the same class are all positives of an image (a batch holds each class about ``B / K`` times), which
is plain CLIP InfoNCE when every class appears once. AdamW, linear warm-up then cosine decay over the budget
(``--steps``, ``--seconds`` or both: whichever ends first; ``--steps`` alone is bit-reproducible), seeded model
and data. The crops are drawn by :func:`pipeline.demo_data.draw_caption_crop` in a data worker, each batch used
``--repeat`` times under a different 90-degree rotation / mirror. Two savings, neither changing what is saved:

* only the token-embedding rows that the captions use are trained (``--token-rows caption``, the default; 62 of
  the 49408 rows for the 16 demo classes, the rest keep their seeded initialisation): updating the whole table
  would cost a third of every step. ``--token-rows frozen`` keeps the whole table at its initialisation (the
  first teacher);
* ``--downsample 2`` (default): the patch kernel starts and stays constant on 2 x 2 pixel blocks, and training
  runs on 112 px crops through the 2 x 2-summed kernel at stride 16, which is exactly the model's own 224 px
  forward on the 2x (nearest) upsampled crop, at a quarter of the patch-embedding cost. The saved model is an
  ordinary 224 px CLIP; it sees, in effect, its input averaged over 2 x 2 pixels.

Outputs::

    --output    the CLIP checkpoint: open_clip state dict (a plain dict of float32 tensors; loads with
                torch.load(weights_only=True)). Use it as  clip.model: OADP-Teacher-ViT-4H, clip.weights: <path>.
    --zeroshot  JSON: parameters, training figures, zero-shot accuracy (generalized: argmax cosine over ALL
                classes) on held-out captioned crops and on objects cut from generated scenes (1.0x and 1.5x
                context, the mean of both embeddings, and OAKE's object-aware embedding of the adaptive square),
                for base and novel classes, chance level, per-class accuracy.

The evaluation reloads the written checkpoint through :func:`pipeline.models.clip.load_clip`, as every later stage does.

``python -m pipeline.teacher --classes "red circle" ... --novel "red star" ... --seconds 240 \\
    --output results/teacher/clip.pt --zeroshot results/teacher/zeroshot.json``
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic, cli, dry_run
from pipeline.teacher.options import TEACHER_MODEL, TOKEN_ROWS, TeacherError, TeacherOptions

# the torch side of the stage, imported on first use (by ``run`` or a caller): the parser needs none of it
_LAZY = {
    "pipeline.teacher.data": (
        "AUG_STREAM", "CaptionBatches", "caption_test_set", "crop_uint8", "normalize", "read_caption_set",
    ),
    "pipeline.teacher.model": (
        "TokenRows", "block_constant_init", "caption_token_ids", "create_model", "encode_image_downsampled",
        "parameter_counts", "pooled_patch_kernel", "save_checkpoint",
    ),
    "pipeline.teacher.training": ("MAX_LOGIT_SCALE", "contrastive_loss", "train"),
    "pipeline.teacher.zeroshot": (
        "EVAL_BATCH", "PHOTO_TEMPLATE", "accuracy", "class_text_embeddings", "context_square", "image_embeddings",
        "scene_objects", "similar_pairs", "zero_shot",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUG_STREAM",
    "EVAL_BATCH",
    "MAX_LOGIT_SCALE",
    "PHOTO_TEMPLATE",
    "TEACHER_MODEL",
    "TOKEN_ROWS",
    "CaptionBatches",
    "TeacherError",
    "TeacherOptions",
    "TokenRows",
    "accuracy",
    "block_constant_init",
    "build_parser",
    "caption_test_set",
    "caption_token_ids",
    "class_text_embeddings",
    "contrastive_loss",
    "context_square",
    "create_model",
    "crop_uint8",
    "encode_image_downsampled",
    "image_embeddings",
    "main",
    "normalize",
    "options_from_args",
    "parameter_counts",
    "pooled_patch_kernel",
    "read_caption_set",
    "run",
    "save_checkpoint",
    "scene_objects",
    "similar_pairs",
    "train",
    "zero_shot",
]

log = logging.getLogger(__name__)


def run(opts: TeacherOptions, output: Path, zeroshot: Path, captions: Path | None = None) -> dict:
    """Train, write the checkpoint, reload it through :func:`pipeline.models.clip.load_clip`, evaluate, write the
    report."""
    from pipeline.models.clip import load_clip
    from pipeline.teacher.model import create_model, parameter_counts, save_checkpoint
    from pipeline.teacher.training import train
    from pipeline.teacher.zeroshot import zero_shot

    model = create_model(opts)
    counts = parameter_counts(model)
    log.info(
        "teacher %s: %.2fM parameters (visual %.2fM, text %.2fM of which token embedding %.2fM)",
        opts.model,
        counts["total"] / 1e6,
        counts["visual"] / 1e6,
        counts["text"] / 1e6,
        counts["token_embedding"] / 1e6,
    )
    figures = train(model, opts)
    save_checkpoint(model, output)
    loaded = load_clip(opts.model, str(output))
    start = time.perf_counter()
    report = zero_shot(loaded.model, opts, captions)
    vild = report["crops"]["vild"]
    log.info(
        "teacher zero-shot (vild, held-out crops): base %.3f, novel %.3f (chance %.3f) in %.0f s",
        vild["base"] or 0.0,
        vild["novel"] or 0.0,
        report["chance"],
        time.perf_counter() - start,
    )
    for name, acc in report["scenes"]["crops"].items():
        log.info(
            "teacher zero-shot (vild, scene %s): base %.3f, novel %.3f",
            name,
            acc["vild"]["base"] or 0.0,
            acc["vild"]["novel"] or 0.0,
        )
    result = {
        **loaded.provenance(),
        "classes": list(opts.classes),
        "base": list(opts.base),
        "novel": list(opts.novel),
        "seed": opts.seed,
        "parameters": counts,
        "training": {
            "budget_steps": opts.steps,
            "budget_seconds": opts.seconds,
            "batch_size": opts.batch_size,
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "warmup": opts.warmup,
            "repeat": opts.repeat,
            "downsample": opts.downsample,
            "threads": opts.threads,
            "token_rows": opts.token_rows,
            **figures,
        },
        "zero_shot": report,
    }
    atomic.write_json(zeroshot, result, compact=False)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.teacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TeacherOptions
    p.add_argument(
        "--classes", nargs="+", action="extend", required=True,
        help="every class, base and novel (demo.classes)",
    )
    p.add_argument(
        "--novel", nargs="*", action="extend", default=[],
        help="the novel class names (demo.novel); the rest are base",
    )
    p.add_argument(
        "--base", nargs="*", action="extend", default=None,
        help="the base names (optional: checked against --novel)",
    )
    p.add_argument("--model", default=TEACHER_MODEL, help="CLIP config to train (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (bit-reproducible budget)")
    p.add_argument("--seconds", type=float, default=None, help="training time budget (default 240 without --steps)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help=f"train at most {dry_run.TEACHER_STEPS} steps (pipeline.core.dry_run)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--repeat", type=int, default=d.repeat, help="steps per rendered batch (rotated / mirrored)")
    p.add_argument(
        "--downsample",
        type=int,
        default=d.downsample,
        help="train on 224/N px crops through the NxN-pooled patch kernel (exact, N^2 x cheaper patch embedding)",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads: 1 data worker + the rest for torch")
    p.add_argument(
        "--token-rows",
        choices=TOKEN_ROWS,
        default=d.token_rows,
        help="token-embedding rows to train: those of the caption vocabulary (default) or none",
    )
    p.add_argument("--eval-per-class", type=int, default=d.eval_per_class, help="held-out captioned crops per class")
    p.add_argument(
        "--captions-test",
        type=Path,
        default=None,
        help="the generator's held-out captions_test.json (default: draw --eval-per-class crops per class here)",
    )
    p.add_argument("--scenes", type=int, default=d.scenes, help="evaluation scenes")
    p.add_argument("--contexts", type=float, nargs="+", default=list(d.contexts), help="scene crop context factors")
    p.add_argument("--output", type=Path, required=True, help="the CLIP checkpoint (.pt)")
    p.add_argument("--zeroshot", type=Path, required=True, help="the zero-shot report (.json)")
    cli.add_log_argument(p)
    return p


def options_from_args(args: argparse.Namespace) -> TeacherOptions:
    if args.base is not None:
        rest = [c for c in args.classes if c not in args.novel]
        if sorted(args.base) != sorted(rest):
            raise TeacherError(f"teacher --base {args.base} is not --classes minus --novel {rest}")
    steps = args.steps
    if args.dry_run:
        steps = min(steps or dry_run.TEACHER_STEPS, dry_run.TEACHER_STEPS)
    seconds = args.seconds if (args.seconds is not None or steps is not None) else 240.0
    return TeacherOptions(
        classes=tuple(args.classes),
        novel=tuple(args.novel),
        model=args.model,
        seed=args.seed,
        steps=steps,
        seconds=seconds,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        repeat=args.repeat,
        downsample=args.downsample,
        threads=args.threads,
        eval_per_class=args.eval_per_class,
        scenes=args.scenes,
        contexts=tuple(args.contexts),
        token_rows=args.token_rows,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    opts = options_from_args(args)
    opts.specs  # noqa: B018 - parse every name now: a bad one fails before training
    return run(opts, args.output, args.zeroshot, args.captions_test)
