"""Stage ``train``: ViLD / OADP detector training and inference (method section 6).

Subcommands::

    fit      train an experiment (``vild_*``: object branch; ``oadp_*``: object + block + global) on base
             annotations with the OAKE caches; resumes from the last checkpoint of its work dir; writes
             ``final.pth`` (weights only). ``--gpus N`` relaunches under torchrun.
    predict  run a trained detector over every image of a split -> COCO-format detections (remapped category ids)
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline import atomic, cli
from pipeline.oake.extract import list_images, sha256_file

log = logging.getLogger(__name__)

BRANCHES = {"vild": ("object",), "oadp": ("object", "block", "global"), "baseline": ()}


def branches_of(experiment: str) -> tuple[str, ...]:
    """The pyramid branches an experiment name asks for (its prefix before ``_``)."""
    prefix = experiment.split("_", 1)[0]
    if prefix not in BRANCHES:
        raise ValueError(f"experiment {experiment!r}: the name must start with one of {sorted(BRANCHES)}")
    return BRANCHES[prefix]


def _config(args: argparse.Namespace) -> dict:
    from pipeline.detector.config import detector_config

    cats = sorted(atomic.read_json(args.names_from)["categories"], key=lambda c: c["id"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    lr = args.lr * args.batch_size * world / 16  # linear scaling from the reference's 16 images per iteration
    log.info("lr %.5f = %.3f x %d images per iteration / 16", lr, args.lr, args.batch_size * world)
    cfg = detector_config(
        names=[c["name"] for c in cats],
        num_base=args.num_base,
        prompts=str(args.prompts),
        ml_prompts=str(args.ml_prompts) if args.ml_prompts else None,
        annotations=str(args.annotations),
        images=str(args.images),
        shards={"globals": args.globals, "blocks": args.blocks, "objects": args.objects},
        work_dir=str(args.work_dir),
        branches=branches_of(args.experiment),
        depth=args.depth,
        scale=args.scale,
        iters=4 if args.dry_run else args.iters,
        batch_size=args.batch_size,
        lr=lr,
        rpn_train=(args.rpn_pre, args.rpn_post),
        rois=args.rois,
        sampling_ratio=args.sampling_ratio,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        rpn_test=args.rpn_test,
    )
    cfg["launcher"] = "pytorch" if world > 1 else "none"
    return cfg


def _cmd_fit(args: argparse.Namespace) -> None:
    if cli.relaunch_under_torchrun("pipeline.train", args.gpus, args.argv):
        return
    from mmengine.config import Config
    from mmengine.runner import Runner

    from pipeline import compat
    from pipeline.detector import register_modules

    compat.allow_mmengine_checkpoints()
    register_modules()
    runner = Runner.from_cfg(Config(_config(args)))
    runner.train()
    if runner.rank != 0:
        return
    model = getattr(runner.model, "module", runner.model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"experiment": args.experiment, "argv": shlex.join(args.argv)}
    with atomic.atomic_path(args.work_dir / "final.pth", suffix=".pth") as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)
    log.info("wrote %s", args.work_dir / "final.pth")


@torch.inference_mode()
def _cmd_predict(args: argparse.Namespace) -> None:
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from tqdm import tqdm

    from pipeline.detector import register_modules

    register_modules()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    fit_args = build_parser().parse_args(shlex.split(ckpt["meta"]["argv"]))
    cfg = _config(fit_args)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cfg["model"]["test_cfg"]["rcnn"]["score_thr"] = args.score_thr
    model = MODELS.build(ConfigDict(cfg["model"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    size = (int(fit_args.scale * 1333 / 800), fit_args.scale)
    pipeline = Compose(
        [
            dict(type="LoadImageFromFile"),
            dict(type="Resize", scale=size, keep_ratio=True),
            dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
        ]
    )
    detections = []
    items = list_images(args.annotations, args.images)[: 4 if args.dry_run else None]
    for item in tqdm(items, desc=f"detect {fit_args.experiment}", unit="img"):
        data = pipeline(dict(img_path=str(item.path), img_id=item.image_id))
        out = model.test_step({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]})[0].pred_instances
        for box, score, label in zip(out.bboxes.tolist(), out.scores.tolist(), out.labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            detections.append(
                {
                    "image_id": item.image_id,
                    "category_id": int(label),
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(score), 5),
                }
            )
    atomic.write_json(args.output, detections)
    log.info(
        "%d detections on %d images -> %s (checkpoint %s)",
        len(detections),
        len(items),
        args.output,
        sha256_file(args.checkpoint)[:12],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_log_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train an experiment")
    p.add_argument("--experiment", required=True, help="vild_* | oadp_* | baseline_*")
    p.add_argument("--names-from", type=Path, required=True, help="remapped file with every class (input)")
    p.add_argument("--num-base", type=int, required=True)
    p.add_argument("--annotations", type=Path, required=True, help="remapped BASE training file (input)")
    p.add_argument("--images", type=Path, required=True, help="training image folder (input)")
    p.add_argument("--prompts", type=Path, required=True, help="vild prompt file (input)")
    p.add_argument("--ml-prompts", type=Path, default=None, help="ml prompt file for block/global heads (input)")
    for kind in ("globals", "blocks", "objects"):
        p.add_argument(f"--{kind}", type=str, nargs="*", default=[], help=f"OAKE {kind} shards of train (inputs)")
    p.add_argument("--work-dir", type=Path, required=True, help="checkpoints and logs; final.pth (output)")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--scale", type=int, default=800)
    p.add_argument("--iters", type=int, default=40000)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.02, help="lr for 16 images per iteration; scaled linearly")
    p.add_argument("--rpn-pre", type=int, default=2000)
    p.add_argument("--rpn-post", type=int, default=1000)
    p.add_argument("--rois", type=int, default=512)
    p.add_argument("--rpn-test", type=int, default=1000, help="RPN proposals per image at inference (reference 1000)")
    p.add_argument("--sampling-ratio", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=2000)
    p.add_argument("--seed", type=int, default=3407)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=_cmd_fit)
    p = sub.add_parser("predict", help="COCO-format detections of a split")
    p.add_argument("--checkpoint", type=Path, required=True, help="final.pth (input)")
    p.add_argument("--annotations", type=Path, required=True, help="file listing the images (input)")
    p.add_argument("--images", type=Path, required=True, help="image folder (input)")
    p.add_argument("--output", type=Path, required=True, help="detections JSON (output)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--score-thr",
        type=float,
        default=0.0,
        help="keep detections scoring above this (reference 0.0: scores that underflow to 0 are dropped)",
    )
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    cli.dispatch(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
