"""Stage ``train``: ViLD / OADP detector training and inference (method section 6).

Subcommands::

    fit      train an experiment on base annotations with the OAKE caches. The experiment name is a config of
             ``pipeline/models/detector/configs`` (mmdet 3 style, ``_base_`` inheritance: ``vild_*`` object branch,
             ``oadp_*`` object + block + global, ``baseline_*`` none) or ``--config FILE``; ``--cfg-options``
             overrides keys. lr is the config's for 16 images per iteration, scaled to the real batch by mmengine
             (said in the log). Resumes from the last checkpoint of its work dir when the same run made it (config,
             input contents, initial weights: ``pipeline.core.workdir``; other checkpoints move to ``stale/``);
             TensorBoard events in ``<work dir>/<timestamp>/vis_data``; writes ``final.pth`` (weights + the resolved
             config; weights-only loadable). ``--gpus N`` relaunches under torchrun.
    predict  run a trained detector over every image of a split -> COCO-format detections (remapped category ids;
             RLE masks when the config has a mask head); ``--regions`` also writes the bbox head's embedding of
             every ground-truth box (for the open-ended evaluation), and the object head's when there is one. An
             unreadable image stops it or, with ``--on-bad-image skip``, gets no detections and no regions
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.core import atomic, cli, images, workdir
from pipeline.core.device import resolve_device
from pipeline.core.hashing import sha256_file
from pipeline.core.images import list_images

log = logging.getLogger(__name__)
_CONFIGS = "shipped: vild_ov_coco, oadp_ov_coco, oadp_ov_lvis[_released], baseline_ov_coco, {baseline,vild,oadp}_demo"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KIND=FILE, got {text!r}")
    return key, value


def _config(args: argparse.Namespace, *, cuda: bool):
    from pipeline.models.detector.config import detector_config, train_dataset

    cats = sorted(atomic.read_json(args.names_from)["categories"], key=lambda c: c["id"])
    world = int(os.environ.get("WORLD_SIZE", args.gpus))
    cfg = detector_config(
        args.config or args.experiment,
        names=[c["name"] for c in cats],
        num_base=args.num_base,
        prompts=dict(args.prompt),
        annotations=str(args.annotations),
        images=str(args.images),
        shards={"globals": args.globals, "blocks": args.blocks, "objects": args.objects},
        work_dir=str(args.work_dir),
        options=args.cfg_options,
        iters=4 if args.dry_run else args.iters,
        batch_size=args.batch_size,
        workers=args.workers,
        world_size=world,
        cuda=cuda,
    )
    if args.dry_run:
        train_dataset(cfg).indices = 8
    return cfg


def _cmd_fit(args: argparse.Namespace) -> None:
    cli.check_gpus(args.gpus)
    cfg = _config(args, cuda=torch.cuda.is_available())
    if int(os.environ.get("RANK", "0")) == 0 and "LOCAL_RANK" not in os.environ:  # the launching process only
        # the fingerprint sees load_from (initial weights) before a resume clears it
        workdir.guard_work_dir(args.work_dir, cfg, dirs=[args.images], run={"gpus": args.gpus})
    if cli.relaunch_under_torchrun("pipeline.train", args.gpus, args.argv):
        return
    from mmengine.runner import Runner

    from pipeline.core import compat
    from pipeline.core.environment import environment
    from pipeline.models.detector import register_modules

    compat.allow_mmengine_checkpoints()
    register_modules()
    workdir.initial_weights(cfg, args.work_dir)
    runner = Runner.from_cfg(cfg)
    prompts = stored_prompts(cfg)  # read as the model was built, not after training
    runner.train()
    if runner.rank != 0:
        return
    model = getattr(runner.model, "module", runner.model)
    meta = {
        "experiment": args.experiment,
        "argv": shlex.join(args.argv),
        "config": cfg.to_dict(),
        "prompts": prompts,
        "environment": environment(),
    }
    with atomic.atomic_path(args.work_dir / "final.pth", suffix=".pth") as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    log.info("wrote %s", args.work_dir / "final.pth")


def stored_prompts(cfg) -> dict[str, dict]:
    """The prompt files the config's classifiers read, by path: ``{path: {names, embeddings[, scaler, bias]}}``.

    The classifiers' text embeddings are non-persistent buffers (not in the state dict); ``final.pth`` carries
    them here, so that a detector loads with the classifier it was trained with, from any working directory and
    after the prompt files were rebuilt."""
    from pipeline.formats import prompt_file
    from pipeline.models.detector.config import classifier_nodes

    paths = sorted({str(d["prompts"]) for d in classifier_nodes(cfg)})
    out = {}
    for path in paths:
        p = prompt_file.load(path)
        out[path] = {k: p[k] for k in ("names", "embeddings", "scaler", "bias") if k in p}
    return out


def load_detector(checkpoint: Path, device: str = "cpu"):
    """A trained detector from ``final.pth`` (weights-only load; the config and the prompt embeddings stored with
    it), in eval mode."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import classifier_nodes

    register_modules()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "config" not in ckpt.get("meta", {}):
        raise ValueError(f"{checkpoint}: not a final.pth of pipeline.train (no meta.config)")
    cfg = Config(ckpt["meta"]["config"])
    stored = ckpt["meta"].get("prompts")
    if stored is None:
        log.warning("%s: no stored prompt embeddings (older final.pth): re-reading the prompt files", checkpoint)
    else:
        for node in classifier_nodes(cfg):
            node["prompts"] = stored[str(node["prompts"])]
    model = MODELS.build(cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), cfg, ckpt["meta"]


def detection_record(image_id: int, box: Sequence[float], score: float, label: int) -> dict:
    """One COCO-format detection: bbox xywh rounded to 0.01 px; the score keeps 7 significant digits, not a fixed
    number of decimals: the ensemble's novel-class scores are often below 1e-5, and rounding them to 0 ties them
    and loses their ranking (measured on the demo: 4122 of 5454 novel detections were 0, -2.6 novel AP50)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "image_id": int(image_id),
        "category_id": int(label),
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": float(f"{float(score):.7g}"),
    }


def _encode_masks(masks) -> list[dict]:
    import numpy as np
    import pycocotools.mask as mask_utils

    out = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.cpu().numpy().astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


@torch.inference_mode()
def _cmd_predict(args: argparse.Namespace) -> None:
    import numpy as np
    from tqdm import tqdm

    device = str(resolve_device(args.device))
    model, cfg, meta = load_detector(args.checkpoint, device)
    model.roi_head.test_cfg["score_thr"] = args.score_thr
    if args.ensemble is not None:
        if getattr(model.roi_head, "object_head", None) is None:
            raise SystemExit(f"predict --ensemble: {args.checkpoint} has no object head to ensemble with")
        from pipeline.models.detector.roi_head import ensemble_exponents

        try:
            lambda_base, lambda_novel = args.ensemble
            model.roi_head.ensemble = ensemble_exponents({"lambda_base": lambda_base, "lambda_novel": lambda_novel})
        except ValueError as err:
            raise SystemExit(f"predict --ensemble: {err}") from None
    policy = images.ImagePolicy(args.on_bad_image)
    pipeline = images.mmcv_test_pipeline(cfg.test_pipeline, policy)
    coco = atomic.read_json(args.annotations)
    anns_by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    keys = ("ann_ids", "image_ids", "category_ids", "iscrowd", "embeddings", "object_embeddings")
    detections, regions = [], {k: [] for k in keys}
    object_head = getattr(model.roi_head, "object_head", None)
    items = list_images(args.annotations, args.images)[: 4 if args.dry_run else None]
    for item in tqdm(items, desc=f"detect {meta['experiment']}", unit="img"):
        data = pipeline(item)
        if data is None:  # skipped (unreadable): no detections and no regions
            continue
        batch = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
        feats = model.extract_feat(batch["inputs"])
        samples = batch["data_samples"]
        proposals = model.rpn_head.predict(feats, samples, rescale=False)
        out = model.roi_head.predict(feats, proposals, samples, rescale=True)[0]
        rles = _encode_masks(out.masks) if "masks" in out else None
        for i, (box, score, label) in enumerate(
            zip(out.bboxes.tolist(), out.scores.tolist(), out.labels.tolist(), strict=True)
        ):
            det = detection_record(item.image_id, box, score, label)
            if rles is not None:
                det["segmentation"] = rles[i]
            detections.append(det)
        anns = anns_by_image.get(item.image_id, [])
        if args.regions is not None and anns:
            scale = samples[0].metainfo["scale_factor"]  # (w, h) factors of the resize
            boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32, device=feats[0].device)
            boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
            boxes *= boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
            _, embeddings = model.roi_head._branch(model.roi_head.bbox_head, feats, [boxes])
            regions["embeddings"].append(embeddings.float().cpu().numpy())
            if object_head is not None:
                _, object_embeddings = model.roi_head._branch(object_head, feats, [boxes])
                regions["object_embeddings"].append(object_embeddings.float().cpu().numpy())
            regions["ann_ids"] += [a["id"] for a in anns]
            regions["image_ids"] += [item.image_id] * len(anns)
            regions["category_ids"] += [a["category_id"] for a in anns]
            regions["iscrowd"] += [int(a.get("iscrowd", 0)) for a in anns]
    atomic.write_json(args.output, detections)
    log.info(
        "%d detections on %d images (%d skipped as unreadable) -> %s (checkpoint %s)",
        len(detections),
        len(items) - len(policy.skipped),
        len(policy.skipped),
        args.output,
        sha256_file(args.checkpoint)[:12],
    )
    if args.regions is not None:
        width = model.roi_head.bbox_head.fc_cls.linear.out_features
        arrays = {
            "ann_ids": np.asarray(regions["ann_ids"], dtype=np.int64),
            "image_ids": np.asarray(regions["image_ids"], dtype=np.int64),
            "category_ids": np.asarray(regions["category_ids"], dtype=np.int64),
            "iscrowd": np.asarray(regions["iscrowd"], dtype=np.uint8),
            "embeddings": np.concatenate(regions["embeddings"]).astype(np.float32)
            if regions["embeddings"]
            else np.zeros((0, width), np.float32),
        }
        if object_head is not None:  # the distilled head's embedding of the same boxes (its own accuracy)
            arrays["object_embeddings"] = (
                np.concatenate(regions["object_embeddings"]).astype(np.float32)
                if regions["object_embeddings"]
                else np.zeros((0, object_head.fc_cls.linear.out_features), np.float32)
            )
        with atomic.atomic_path(args.regions, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        log.info("%d ground-truth region embeddings -> %s", len(arrays["ann_ids"]), args.regions)


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_log_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train an experiment")
    p.add_argument("--experiment", required=True, help="the experiment name (= its config name unless --config)")
    p.add_argument("--config", default=None, help=f"config name or .py file (default: the experiment's); {_CONFIGS}")
    p.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default=None, help="dotted-key overrides, as mmdet's tools"
    )
    p.add_argument("--names-from", type=Path, required=True, help="remapped file with every class (input)")
    p.add_argument("--num-base", type=int, required=True)
    p.add_argument("--annotations", type=Path, required=True, help="remapped BASE training file (input)")
    p.add_argument("--images", type=Path, required=True, help="training image folder (input)")
    p.add_argument(
        "--prompt", type=_key_value, action="append", default=[], help="KIND=FILE prompt file (inputs; repeatable)"
    )
    for kind in ("globals", "blocks", "objects"):
        p.add_argument(f"--{kind}", type=str, nargs="*", default=[], help=f"OAKE {kind} shards of train (inputs)")
    p.add_argument("--work-dir", type=Path, required=True, help="checkpoints and logs; final.pth (output)")
    p.add_argument("--iters", type=int, default=None, help="iterations (default: the config's schedule)")
    p.add_argument("--batch-size", type=int, default=None, help="images per GPU (default: the config's, 2)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers per process")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="4 iterations on 8 images")
    p.set_defaults(func=_cmd_fit)
    p = sub.add_parser("predict", help="COCO-format detections of a split")
    p.add_argument("--checkpoint", type=Path, required=True, help="final.pth (input)")
    p.add_argument("--annotations", type=Path, required=True, help="file listing the images (input)")
    p.add_argument("--images", type=Path, required=True, help="image folder (input)")
    p.add_argument("--output", type=Path, required=True, help="detections JSON (output)")
    p.add_argument(
        "--regions",
        type=Path,
        default=None,
        help="npz of the bbox head's embeddings of every ground-truth box (output; open-ended evaluation)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--ensemble",
        type=float,
        nargs=2,
        metavar=("LAMBDA_BASE", "LAMBDA_NOVEL"),
        default=None,
        help="bbox-head exponents of the inference ensemble (default: the trained config's, 2/3 1/3); "
        "1 1 scores by the bbox head alone, 0 0 by the object head alone",
    )
    p.add_argument(
        "--score-thr",
        type=float,
        default=0.0,
        help="keep detections scoring above this (reference 0.0: scores that underflow to 0 are dropped)",
    )
    p.add_argument(
        "--on-bad-image",
        choices=images.ON_BAD_IMAGE,
        default="error",
        help="an unreadable image stops the job (error) or is skipped: no detections, no regions (skip)",
    )
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    cli.dispatch(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
