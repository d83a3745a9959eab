"""Stage ``plan``: what a run costs before it starts, per stage: the work, the disk of each output and the time on a
named device, and what already exists.

Command (``snakemake --cores 1 --force plan`` passes the configured values)::

    python -m pipeline.plan --dataset coco --splits train2017=A.json val2017=B.json --clip-model ViT-B-32
        --kinds globals blocks objects --shards 64 --objects-per-image 1000 --experiments oadp_ov_coco
        --device cpu --output results/plan/plan.json

Work: images per split and their sizes (the annotation JSON's ``width`` / ``height``), blocks per image from the
pyramid geometry, object rows per image (the proposals file's boxes with both sides >= 4 when it exists, else
``--objects-per-image``), iterations x images per optimiser step of each training. Disk: feature shards and
proposals files from their row counts, dims and dtypes (:mod:`pipeline.plan.disk`), checkpoints from the built
model's parameters, detections from the val images and the detector's detections per image. Time: work divided by
the throughputs of ``stages.json`` benchmarks measured on the device (:mod:`pipeline.plan.timing`); a stage
without such a measurement says ``unmeasured``. State: each output done / partial / todo, with the seconds of
Snakemake's benchmark file of a job that ran.

Outputs: a table on stdout and ``--output`` (JSON, written atomically)::

    {"dataset", "device", "dry_run", "clip": {"model", "dim"}, "splits": {folder: {"images", "annotated",
     "blocks", "source"}}, "stages": [{"stage", "folder" | "experiment", "work": {...}, "bytes", "seconds",
     "time_source", "jobs": [{"output", "bytes", "seconds", "state", "actual_bytes", "measured_seconds"}],
     "remaining_bytes", "remaining_seconds"}], "totals": {"bytes", "seconds", "remaining_bytes",
     "remaining_seconds", "unmeasured": [stage]}, "bytes_by_kind": {kind: bytes}, "assumptions": [str]}
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.core import atomic
from pipeline.core import dry_run as dry
from pipeline.core.options import Command, option
from pipeline.plan import disk, report, timing, work

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """The configured dataset, caches and experiments whose cost is planned."""

    dataset: str = option(help="dataset name (the results/ folders are named by it)")
    splits: tuple[str, ...] = option(
        help="FOLDER=ANNOTATIONS per split, the training split first: the file listing every image of the split"
    )
    expected_images: tuple[int, ...] = option(
        (), help="images per split (same order) where a split's annotation file does not exist yet (the demo's)"
    )
    expected_sizes: tuple[str, ...] = option(
        (), help="candidate WIDTHxHEIGHT sizes of the images of a split not generated yet"
    )
    expected_classes: int = option(0, help="class count of a split not generated yet")
    clip_model: str = option(help="CLIP architecture of OAKE (its embedding dim sizes the shards)")
    kinds: tuple[str, ...] = option(
        ("globals", "blocks", "objects"),
        help="OAKE folders the DAG builds on every split: a kind, with a suffix where the configured extraction "
        "settings differ from the defaults (objects-mask_off)",
    )
    variant_folders: tuple[str, ...] = option(
        (),
        help="OAKE folders at extraction settings of a variant (KIND-SETTING..., e.g. objects-mask_off): "
        "extracted for the training split only",
    )
    shards: int = option(1, help="shards per split and kind")
    object_storage: str = option("float16", help="objects' embedding storage", choices=("float16", "int8"))
    compression: str = option("none", help="final shards' compression", choices=("none", "gzip"))
    objects_per_image: int = option(1000, help="proposals kept per image (proposals.max_per_img)")
    proposals_imported: bool = option(False, help="proposals come from the reference's pickles (no RPN training)")
    rpn_epochs: float = option(12.0, help="RPN schedule in epochs over the annotated training images")
    rpn_iters: int | None = option(None, help="RPN optimiser steps in place of epochs")
    rpn_gpus: int = option(1, help="GPUs of the RPN's training")
    rpn_batch_size: int = option(2, help="RPN images per GPU")
    rpn_lr_batch: int = option(16, help="RPN images per optimiser step of the reference (proposals.lr_batch)")
    rpn_effective_batch: Literal["reference", "actual"] = option(
        "reference", help="proposals.effective_batch: accumulate to lr_batch (reference) or not (actual)"
    )
    experiments: tuple[str, ...] = option(
        (), help="detector runs to train: NAME (a shipped config) or NAME=CONFIG (a shipped name or a .py file)"
    )
    experiment_options: str = option("{}", help="JSON {run name: {dotted config key: value}}: each run's overrides")
    imported: tuple[str, ...] = option((), help="runs whose final.pth is a converted released one (not trained)")
    train_iters: int | None = option(None, help="detector optimiser steps (none: each config's schedule)")
    train_batch_size: int | None = option(None, help="detector images per GPU (none: the config's)")
    train_gpus: int = option(1, help="GPUs of a detector training")
    train_effective_batch: Literal["reference", "actual"] = option(
        "reference", help="train.effective_batch: accumulate to the config's batch (reference) or not (actual)"
    )
    checkpoints: bool = option(True, help="size each final.pth by building its model (a few seconds each)")
    dry_run: bool = option(False, help="plan the dry run (the first images of each split, a few iterations)")
    device: str = option("cpu", help="the hardware the times are for: cpu, or a GPU's short name (h100, a100, ...)")
    results: Path = option(Path("results"), help="the results folder whose existing outputs are read")
    bench: tuple[Path, ...] = option(
        (Path("results/bench"), Path("results/gpu_check/bench")), help="folders of benchmark results (stages.json)"
    )
    output: Path = option(Path("results/plan/plan.json"), help="the plan as JSON (output)")


def _splits(opts: PlanOptions) -> list[work.SplitImages]:
    out = []
    for k, entry in enumerate(opts.splits):
        folder, sep, path = entry.partition("=")
        if not sep or not folder or not path:
            raise ValueError(f"--splits {entry!r}: expected FOLDER=ANNOTATIONS")
        if Path(path).exists():
            out.append(work.read_split(folder, Path(path)))
        elif k < len(opts.expected_images) and opts.expected_sizes:
            sizes = [tuple(int(v) for v in s.lower().split("x")) for s in opts.expected_sizes]
            out.append(work.expected_split(folder, opts.expected_images[k], sizes, opts.expected_classes))
        else:
            raise ValueError(f"--splits {folder}: {path} does not exist and no --expected-images / --expected-sizes")
    if not out:
        raise ValueError("--splits: at least one split (the training split) is needed")
    return out


def _job(output: Path, benchmark: Path | None, nbytes: int | None, seconds: float | None) -> dict:
    st = disk.state(output, benchmark)
    return {
        "output": str(output),
        "bytes": nbytes,
        "seconds": seconds,
        "state": st.state,
        "actual_bytes": st.bytes,
        "measured_seconds": st.seconds,
    }


def _stage(name: str, key: dict, work_: dict, jobs: list[dict], time_source: str) -> dict:
    known = [j["seconds"] for j in jobs if j["seconds"] is not None]
    todo = [j for j in jobs if j["state"] != "done"]

    def total(field: str, js: list[dict]) -> float | None:
        return sum(j[field] for j in js) if all(j[field] is not None for j in js) else None

    return {
        "stage": name,
        **key,
        "work": work_,
        "bytes": total("bytes", jobs),
        "seconds": sum(known) if len(known) == len(jobs) else None,
        "time_source": time_source,
        "jobs": jobs,
        "done": len(jobs) - len(todo),
        "remaining_bytes": total("bytes", todo),
        "remaining_seconds": total("seconds", todo),
    }


def _oake(opts, splits, dim, rates) -> list[dict]:
    """One stage per OAKE folder and split: each folder of ``opts.kinds`` on every split, then each of
    ``opts.variant_folders`` (a kind at a variant's extraction settings) on the training split. A folder is its
    kind, or its kind and the settings' suffix (``objects-mask_off``)."""
    stages = []
    proposals_dir = opts.results / "proposals" / opts.dataset
    folders = [("--kinds", folder, split) for split in splits for folder in opts.kinds]
    folders += [("--variant-folders", folder, splits[0]) for folder in opts.variant_folders]
    for flag, folder, split in folders:
        kind = folder.split("-", 1)[0]
        if kind not in ("globals", "blocks", "objects"):
            raise ValueError(f"{flag} {folder!r}: expected KIND or KIND-SETTING with KIND globals, blocks or objects")
        dry_ids = split.dry_ids if opts.dry_run else None
        limit = dry.OBJECTS_PER_IMAGE if opts.dry_run else opts.objects_per_image
        if kind == "objects":
            found = work.proposal_rows(proposals_dir / f"{split.folder}.h5", split.ids, limit)
            rows_of = found if found is not None else np.full(len(split.ids), limit, dtype=np.int64)
        else:
            rows_of = np.ones(len(split.ids), dtype=np.int64) if kind == "globals" else work.block_rows(split.sizes)
        storage = opts.object_storage if kind == "objects" else "float16"
        suffix = folder[len(kind) :]  # "" at the configured settings, "-mask_off" etc. for a variant's
        jobs, images, rows = [], 0, 0
        for index in range(opts.shards):
            members = work.shard_members(split.ids, opts.shards, index, dry_ids)
            n, m = len(members), int(rows_of[members].sum())
            images, rows = images + n, rows + m
            out = opts.results / "oake" / opts.dataset / folder / split.folder / f"shard-{index:03d}.h5"
            bench = opts.results / "benchmarks" / f"oake_{kind}" / opts.dataset / f"{split.folder}{suffix}"
            nbytes = disk.shard_bytes(kind, storage, dim, n, m)
            if opts.compression == "gzip":
                nbytes = None  # compressed size depends on the contents
            jobs.append(
                _job(out, bench / f"shard-{index:03d}.tsv", nbytes, rates.oake_seconds(opts.clip_model, kind, m))
            )
        measured = kind in rates.oake.get(opts.clip_model, {})
        source = f"stages.json oake {opts.clip_model} {kind}" if measured else timing.UNMEASURED
        work_ = {"images": images, "rows": rows, "rows_per_image": round(rows / max(images, 1), 2), "dim": dim}
        if kind == "objects":
            work_["rows_from"] = "proposals file" if found is not None else f"{limit} proposals per image"
        stages.append(_stage(f"oake_{kind}", {"folder": f"{split.folder}{suffix}"}, work_, jobs, source))
    return stages


def _proposals(opts, splits, rates) -> list[dict]:
    stages = []
    root = opts.results / "proposals" / opts.dataset
    if not opts.proposals_imported:
        images = len(splits[0].dry_ids) if opts.dry_run else splits[0].annotated
        sched = work.rpn_training(
            images,
            epochs=opts.rpn_epochs,
            iters=opts.rpn_iters,
            gpus=opts.rpn_gpus,
            batch_size=opts.rpn_batch_size,
            lr_batch=opts.rpn_lr_batch,
            mode=opts.rpn_effective_batch,
        )
        if opts.dry_run:
            sched = work.Training(dry.ITERS, sched.batch, sched.per_gpu, sched.accumulation)
        bench = opts.results / "benchmarks" / "proposals_train" / f"{opts.dataset}.tsv"
        job = _job(root / "rpn" / "final.pth", bench, None, None)
        work_ = {
            "training_images": images,
            "iters": sched.iters,
            "images_per_step": sched.batch,
            "images_per_gpu_forward": sched.per_gpu,
            "accumulation": sched.accumulation,
        }
        stages.append(_stage("proposals_train", {}, work_, [job], timing.UNMEASURED))
    for split in splits:
        n = len(split.dry_ids) if opts.dry_run else len(split.ids)
        bench = opts.results / "benchmarks" / "proposals_predict" / opts.dataset / f"{split.folder}.tsv"
        nbytes = disk.proposals_bytes(n, n * opts.objects_per_image)
        job = _job(root / f"{split.folder}.h5", bench, nbytes, None)
        work_ = {"images": n, "boxes_per_image": opts.objects_per_image}
        stages.append(_stage("proposals_predict", {"folder": split.folder}, work_, [job], timing.UNMEASURED))
    return stages


def _runs(opts: PlanOptions) -> list[tuple[str, str, dict]]:
    """(run name, config, dotted-key options) of every ``--experiments`` entry."""
    try:
        options = json.loads(opts.experiment_options)
    except ValueError as exc:
        raise ValueError(f"--experiment-options: not JSON ({exc})") from exc
    runs = []
    for entry in opts.experiments:
        name, _, config = entry.partition("=")
        runs.append((name, config or name, dict(options.get(name) or {})))
    return runs


def _training(opts, splits, dim, rates) -> list[dict]:
    stages = []
    train, val = splits[0], splits[-1]
    classes = max(val.categories, train.categories, 2)
    for name, config, options in _runs(opts):
        images = len(train.dry_ids) if opts.dry_run else train.annotated
        sched, prompts, caches, per_image = work.detector_training(
            config,
            options,
            images,
            iters=dry.ITERS if opts.dry_run else opts.train_iters,
            batch_size=opts.train_batch_size,
            gpus=opts.train_gpus,
            mode=opts.train_effective_batch,
        )
        nbytes = None
        if opts.checkpoints:
            nbytes = disk.checkpoint_bytes(config, options, prompts, classes, max(1, classes * 3 // 4), dim)
        out = opts.results / "train" / name / "final.pth"
        bench = opts.results / "benchmarks" / "train" / f"{name}.tsv"
        trained = name not in opts.imported
        seconds = rates.train_seconds(Path(config).stem, sched.images) if trained else 0.0
        work_ = {
            "training_images": images,
            "iters": sched.iters if trained else 0,
            "images_per_step": sched.batch,
            "images_per_gpu_forward": sched.per_gpu,
            "accumulation": sched.accumulation,
            "config": config,
            "reads_oake": list(caches),
            "reads_prompts": list(prompts),
        }
        source = (
            "imported"
            if not trained
            else f"stages.json train {Path(config).stem}"
            if seconds is not None
            else timing.UNMEASURED
        )
        stages.append(_stage("train", {"experiment": name}, work_, [_job(out, bench, nbytes, seconds)], source))
        n = len(val.dry_ids) if opts.dry_run else len(val.ids)
        out = opts.results / "evaluate" / name / "detections.json"
        job = _job(out, None, n * per_image * disk.DETECTION_BYTES, None)
        work_ = {"images": n, "detections_per_image": per_image}
        stages.append(_stage("train_predict", {"experiment": name}, work_, [job], timing.UNMEASURED))
    return stages


def build(opts: PlanOptions) -> dict:
    """The plan as a dict (the ``--output`` JSON)."""
    splits = _splits(opts)
    from pipeline.models.clip import configs as clip_configs

    dim = clip_configs.embed_dim(opts.clip_model)
    rates = timing.load(opts.device, opts.bench)
    stages = _proposals(opts, splits, rates) + _oake(opts, splits, dim, rates) + _training(opts, splits, dim, rates)
    by_kind: dict[str, int | None] = {}
    for s in stages:
        if s["stage"].startswith("oake_"):
            kind, before = s["stage"][len("oake_") :], by_kind.get(s["stage"][len("oake_") :], 0)
            by_kind[kind] = None if s["bytes"] is None or before is None else before + s["bytes"]
    assumptions = [
        "feature shards: uncompressed final layout, rows x row bytes + per-image index + "
        f"HDF5 headers and attrs per shard ({disk.SHARD_OVERHEAD} B)",
        "object rows: the proposals file's boxes with both sides >= 4 when it exists, else "
        f"{opts.objects_per_image} per image (proposals.max_per_img: an upper bound)",
        f"detections: {disk.DETECTION_BYTES} B per detection, every image at the detector's max_per_img",
        "checkpoints: float32 parameters and buffers of the built model + one prompt table per classifier",
        "training time: images processed x the benchmark's seconds per image (batch 2 steps, "
        "accumulation and more GPUs change the wall time, not the device time)",
        "times are device-seconds of one job at a time, as the benchmarks measured them (threads: see the files)",
    ]
    return {
        "dataset": opts.dataset,
        "device": opts.device,
        "dry_run": opts.dry_run,
        "clip": {"model": opts.clip_model, "dim": dim},
        "bench_files": list(rates.source),
        "splits": {
            s.folder: {
                "images": len(s.dry_ids) if opts.dry_run else len(s.ids),
                "annotated": s.annotated,
                "blocks_per_image": round(float(work.block_rows(s.sizes).mean()), 2) if len(s.ids) else 0.0,
                "source": s.source,
            }
            for s in splits
        },
        "stages": stages,
        "totals": _totals(stages),
        "bytes_by_kind": by_kind,
        "assumptions": assumptions,
    }


def _totals(stages: list[dict]) -> dict:
    def add(field: str) -> int | float:
        return sum(s[field] for s in stages if s[field] is not None)

    return {
        "bytes": add("bytes"),
        "seconds": add("seconds"),
        "remaining_bytes": add("remaining_bytes"),
        "remaining_seconds": add("remaining_seconds"),
        "bytes_unknown": sorted({s["stage"] for s in stages if s["bytes"] is None}),
        "unmeasured": sorted({s["stage"] for s in stages if s["seconds"] is None}),
    }


def run(opts: PlanOptions) -> dict:
    """Build the plan, print its table on stdout and write ``opts.output`` atomically."""
    plan = build(opts)
    atomic.write_json(opts.output, plan, compact=False)
    sys.stdout.write(report.table(plan) + "\n")
    log.info("plan written to %s", opts.output)
    return plan


_COMMAND = Command("python -m pipeline.plan", __doc__, PlanOptions, run)
build_parser = _COMMAND.build_parser
main = _COMMAND.main
