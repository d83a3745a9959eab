"""Detector training benchmark: OADP vs the plain Faster R-CNN of the same build on the same batches.

"Same build" = the experiment config with the pyramid removed (no object, block and global heads): the same
backbone, FPN, RPN and bbox head (text-embedding classifier), so the ratio is the cost of the distillation branches.
Each variant trains in its own subprocess (peak memory is per process) on identical pre-generated batches
(images, boxes and the CLIP features the cache would provide: 14 blocks per image as the 1+4+9 pyramid, objects per
image as configured); warm-up steps are not timed. Figures: median / mean step time (s), ``ratio`` = OADP / plain
median (target <= 1.3), peak memory (CPU: max RSS of the process; GPU: ``torch.cuda.max_memory_allocated``).
On a CPU the demo config (R18-FPN, 256 px) is measured; with a GPU also the full R50-FPN config at 800 px.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.core import cli

NAMES = [f"class {i}" for i in range(65)]
NUM_BASE = 48
DIM = 512


def _prompts(root: Path) -> dict[str, str]:
    from pipeline.formats import prompt_file

    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(len(NAMES), DIM, generator=g), dim=-1)
    paths = {"vild": str(root / "vild.pth"), "ml": str(root / "ml.pth")}
    prompt_file.save(paths["vild"], NAMES, emb, {"kind": "bench"})
    prompt_file.save(paths["ml"], NAMES, emb, {"kind": "bench"}, scaler=20.0, bias=4.0)
    return paths


def _batches(num: int, size: tuple[int, int], objects: int, device: str, seed: int = 0) -> list[dict]:
    """``num`` batches of 2 images with 3-7 base boxes, 14 block boxes and ``objects`` object boxes each."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    h, w = size
    out = []
    for _ in range(num):
        inputs, samples = [], []
        for _ in range(2):
            inputs.append(torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8))
            s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0), flip=False))
            n = int(torch.randint(3, 8, (1,), generator=g))
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
            wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
            s.gt_instances = InstanceData(
                bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, NUM_BASE, (n,), generator=g)
            )
            blocks = [[0.0, 0.0, w, h]]
            for k in (2, 3):
                blocks += [[i * w / k, j * h / k, (i + 1) * w / k, (j + 1) * h / k] for i in range(k) for j in range(k)]
            s.block_bboxes = torch.tensor(blocks)
            s.block_labels = torch.rand(len(blocks), len(NAMES), generator=g) < 0.05
            s.clip_blocks = F.normalize(torch.randn(len(blocks), DIM, generator=g), dim=1)
            s.clip_global = F.normalize(torch.randn(DIM, generator=g), dim=0)
            oxy = torch.rand(objects, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
            s.object_bboxes = torch.cat([oxy, oxy + 8 + torch.rand(objects, 2, generator=g) * 40], 1)
            s.clip_objects = F.normalize(torch.randn(objects, DIM, generator=g), dim=1)
            samples.append(s)
        out.append({"inputs": inputs, "data_samples": samples})
    return out


def _worker(args: argparse.Namespace) -> None:
    """One variant in this process: train ``warmup + steps`` iterations, print the figures as JSON."""
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import detector_config

    torch.set_num_threads(args.threads)
    register_modules()
    device = args.device
    with tempfile.TemporaryDirectory() as tmp:
        prompt_files = _prompts(Path(tmp))
        options = {}
        if args.variant == "plain":
            options = {"model.roi_head.object_head": None, "model.roi_head.block_head": None, "model.global_head": None}
        cfg = detector_config(
            args.config, names=NAMES, num_base=NUM_BASE, prompts=prompt_files, options=options, cuda=device == "cuda"
        )
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).to(device).train()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batches = _batches(args.warmup + args.steps, tuple(args.size), args.objects, device)
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i, batch in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        data = model.data_preprocessor(batch, True)
        with wrapper.optim_context(model):
            losses = model.loss(data["inputs"], data["data_samples"])
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(
        json.dumps(
            {
                "median_s": statistics.median(times),
                "mean_s": statistics.fmean(times),
                "steps": len(times),
                "peak_mib": round(peak, 1),
                "peak_kind": "cuda max_memory_allocated" if device == "cuda" else "process max RSS",
            }
        )
    )


def _measure(config: str, variant: str, device: str, size, objects: int, steps: int, warmup: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.train", "--worker", "--config", config, "--variant", variant]
    cmd += ["--device", device, "--size", *map(str, size), "--objects", str(objects)]
    cmd += ["--steps", str(steps), "--warmup", str(warmup), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench worker {config}/{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compare(config: str, device: str, size, objects: int, steps: int, warmup: int) -> dict:
    oadp = _measure(config, "oadp", device, size, objects, steps, warmup)
    plain = _measure(config, "plain", device, size, objects, steps, warmup)
    return {
        "config": config,
        "device": device,
        "image_size": list(size),
        "batch": 2,
        "objects_per_image": objects,
        "oadp": oadp,
        "plain_faster_rcnn": plain,
        "ratio": round(oadp["median_s"] / plain["median_s"], 3),
        "target_ratio": 1.3,
        "memory_ratio": round(oadp["peak_mib"] / plain["peak_mib"], 3),
    }


def run(scale: float = 1.0) -> dict:
    steps = max(5, int(20 * scale))
    result = {"cpu_threads": torch.get_num_threads(), "runs": []}
    result["runs"].append(_compare("oadp_demo", "cpu", (256, 341), 50, steps, 3))
    if torch.cuda.is_available():
        result["runs"].append(_compare("oadp_demo", "cuda", (256, 341), 50, steps, 5))
        result["runs"].append(_compare("oadp_ov_coco", "cuda", (800, 1216), 100, steps, 5))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__)
    p.add_argument("--worker", action="store_true", help="internal: measure one variant in this process")
    p.add_argument("--config", default="oadp_demo")
    p.add_argument("--variant", choices=["oadp", "plain"], default="oadp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, nargs=2, default=[256, 341], metavar=("H", "W"))
    p.add_argument("--objects", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
    else:
        print(json.dumps(run(), indent=1))


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
