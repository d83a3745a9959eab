"""Stage throughputs for the cost plan (``python -m pipeline.plan``): ``results/bench/stages.json``.

On this machine's device (CUDA when visible, else the CPU), measured through the stages' own code:

* ``oake``: each extractor (globals, blocks, objects) end to end on generated images of COCO-like sizes with
  :data:`PROPOSALS_PER_IMAGE` proposals each, for the demo's CLIP and ViT-B-32 (random weights: the same
  compute as trained ones); rows/s and images/s (model loading not counted);
* ``train``: seconds per iteration of 2 images of each detector config of :data:`CPU_CONFIGS` (the demo's; on a
  GPU :data:`GPU_CONFIGS`, the presets' at 800x1216), the warm-up steps not counted (:mod:`benchmarks.train`'s
  worker): the median step of the faster of two runs.

On a CPU both are measured with :data:`CPU_JOB_THREADS` thread(s): Snakemake runs each OAKE and training job with
``OMP_NUM_THREADS`` = the rule's threads, which is 1 for these rules, so a figure at the machine's thread count would
not be the time of a job of the DAG.

Layout: :mod:`pipeline.plan.timing`.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import h5py
import torch

from benchmarks import generated
from pipeline.core import atomic
from pipeline.oake import blocks, objects
from pipeline.oake import globals as oake_globals

#: CLIP models and the images each is measured on (ViT-B-32's object-aware forward takes seconds per crop on a CPU)
MODELS = {"OADP-Teacher-ViT-4H": 24, "ViT-B-32": 4}
PROPOSALS_PER_IMAGE = 20
#: threads of an OAKE or training job on a CPU (the rules declare no ``threads:``: Snakemake's default, 1)
CPU_JOB_THREADS = 1
CPU_CONFIGS = {"oadp_demo": (256, 341), "vild_demo": (256, 341), "baseline_demo": (256, 341)}
GPU_CONFIGS = {"oadp_ov_coco": (800, 1216), "vild_ov_coco": (800, 1216), "oadp_ov_lvis": (800, 1216)}
RUNNERS = {
    "globals": (oake_globals.GlobalsOptions, oake_globals.run),
    "blocks": (blocks.BlocksOptions, blocks.run),
    "objects": (objects.ObjectsOptions, objects.run),
}


def _device() -> tuple[str, str]:
    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", platform.processor() or platform.machine()


def _images(tmp: Path, count: int) -> tuple[Path, Path, Path]:
    """Generated images (640x480, 640x427, 427x640) with random proposals: annotations, image folder, proposals."""
    return generated.images_with_proposals(tmp, count, ((640, 480), (640, 427), (427, 640)), PROPOSALS_PER_IMAGE, 160)


def _first(annotations: Path, count: int, folder: Path) -> Path:
    """An annotation file with the first ``count`` images of ``annotations`` (written under ``folder``)."""
    data = atomic.read_json(annotations)
    keep = {im["id"] for im in data["images"][:count]}
    out = folder / "annotations.json"
    atomic.write_json(
        out,
        {
            **data,
            "images": [im for im in data["images"] if im["id"] in keep],
            "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
        },
    )
    return out


def _oake(tmp: Path, scale: float) -> dict:
    ann, images, props = _images(tmp, max(2, round(max(MODELS.values()) * scale)))
    out: dict = {}
    for model, count in MODELS.items():
        out[model] = {}
        subset = _first(ann, max(2, round(count * scale)), tmp / model)
        for kind, (cls, runner) in RUNNERS.items():
            extra = {"proposals": props} if kind == "objects" else {}
            shard = tmp / model / kind / "shard-000.h5"
            stats = runner(cls(annotations=subset, images=images, output=shard, model=model, weights="random", **extra))
            with h5py.File(shard, "r") as f:
                rows = int(f["offsets"][-1])
            seconds = stats["images"] / stats["images_per_s"]
            out[model][kind] = {
                "images": int(stats["images"]),
                "rows": rows,
                "seconds": round(seconds, 3),
                "images_per_s": round(stats["images_per_s"], 3),
                "rows_per_s": round(rows / seconds, 3),
            }
    return out


def run(scale: float = 1.0) -> dict:
    from benchmarks import train as train_bench

    device, name = _device()
    if device == "cpu":
        torch.set_num_threads(CPU_JOB_THREADS)
    result: dict = {"benchmark": "stages", "device": device, "device_name": name, "threads": torch.get_num_threads()}
    result["load_average_before"] = round(os.getloadavg()[0], 2)  # other work on the machine slows every figure
    with tempfile.TemporaryDirectory(prefix="oadp-stages-") as tmp:
        result["oake"] = _oake(Path(tmp), scale)
    steps = max(5, int(15 * scale))
    configs = GPU_CONFIGS if device == "cuda" else CPU_CONFIGS
    result["train"] = {}
    for config, size in configs.items():
        # the faster of two runs (timeit's convention): other work on a shared machine only ever slows a run down
        runs = [
            train_bench._measure(config, "oadp", device, size, 100 if size[0] > 300 else 50, steps, 3) for _ in "ab"
        ]
        medians = [round(m["median_s"], 4) for m in runs]
        result["train"][config] = {
            "s_per_iter": min(medians),
            "runs_s_per_iter": medians,
            "images_per_iter": 2,
            "image_size": size,
        }
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    return result
