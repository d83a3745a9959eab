"""OAKE benchmark: extractor throughput vs the bare model, disk use vs per-image ``torch.save``, random reads.

Runs on generated demo images with ViT-B/32-shaped random weights on this machine (CPU unless a GPU is
visible). Figures (targets from the issue):

* ``throughput``: images/s of each extractor end to end (decode in workers, prepare, forward, write, verify)
  and of the bare batched model forward on the same prepared inputs; ``ratio`` = extractor / bare (>= 0.9).
* ``disk``: allocated bytes (``du``) of the shards vs one ``torch.save`` file per image holding the same
  tensors (the reference layout); ratio per kind (globals <= 0.3, blocks and objects <= 0.95), and int8 objects.
  ``disk`` is measured on the demo run's small shards (HDF5's fixed overhead weighs there); ``disk_at_scale`` on
  1,000-image shards with the reference's row counts.
* ``random_read``: 1,000 images' object features read in random order from a shard vs ``torch.load`` of
  per-image files (>= 5x).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import generated
from pipeline.core.device import resolve_device
from pipeline.formats import proposal_file
from pipeline.formats.feature_cache import ShardReader, ShardWriter
from pipeline.models.clip import load_clip, vision
from pipeline.oake import blocks, extract, objects
from pipeline.oake import globals as oake_globals

MODEL = "ViT-B-32"
PROPOSALS_PER_IMAGE = 12


def du_bytes(paths: list[Path]) -> int:
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def _args(ann: Path, images: Path, out: Path, batch: int = 8) -> extract.ExtractOptions:
    """The options of one extraction as the stage builds them from its command line (one shard, fp16 autocast)."""
    return extract.ExtractOptions(
        annotations=ann,
        images=images,
        output=out,
        model=MODEL,
        weights="random",
        precision="fp16",
        batch_images=batch,
        workers=1,
    )


def _bare(forward, prepared: list[dict], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(prepared), batch):
        forward(prepared[i : i + batch])
    return len(prepared) / (time.perf_counter() - start)


def _per_file(reader: ShardReader, folder: Path, kind: str) -> list[Path]:
    """The reference layout: one torch.save file per image with the same fp16 tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id in reader.image_ids:
        rec = reader.get(int(image_id))
        emb = torch.from_numpy(rec["embeddings"]).half()
        if kind == "globals":
            obj = emb[0]
        else:
            obj = {"embeddings": emb, "bboxes": torch.from_numpy(rec["boxes"]).half()}
            if kind == "objects":
                obj["objectness"] = torch.from_numpy(rec["objectness"]).half()[:, None]
        path = folder / f"{int(image_id):012d}.pth"
        torch.save(obj, path)
        paths.append(path)
    return paths


def _random_read(tmp: Path, n: int = 1000, rows: int = 300, dim: int = 512) -> dict:
    rng = np.random.default_rng(0)
    ids = list(range(1, n + 1))
    shard, gz = tmp / "read.h5", tmp / "read_gzip.h5"
    files = tmp / "read_files"
    files.mkdir()
    with (
        ShardWriter(shard, ids, "objects", dim, {"bench": True}) as w,
        ShardWriter(gz, ids, "objects", dim, {"bench": True}, compression="gzip") as wz,
    ):
        for image_id in ids:
            e = rng.normal(size=(rows, dim)).astype(np.float32)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            b = rng.uniform(0, 500, size=(rows, 4)).astype(np.float32)
            s = rng.uniform(size=rows).astype(np.float32)
            w.add(image_id, e, b, s)
            wz.add(image_id, e, b, s)
            torch.save(
                {
                    "embeddings": torch.from_numpy(e).half(),
                    "bboxes": torch.from_numpy(b).half(),
                    "objectness": torch.from_numpy(s).half()[:, None],
                },
                files / f"{image_id:012d}.pth",
            )
        w.finalize(ids)
        wz.finalize(ids)
    order = rng.permutation(ids).tolist()
    os.sync()
    start = time.perf_counter()
    reader = ShardReader(shard)
    for image_id in order:
        reader.get(image_id)
    shard_s = time.perf_counter() - start
    start = time.perf_counter()
    for image_id in order:
        torch.load(files / f"{image_id:012d}.pth", weights_only=True)
    files_s = time.perf_counter() - start
    start = time.perf_counter()
    reader = ShardReader(gz)
    for image_id in order:
        reader.get(image_id)
    gzip_s = time.perf_counter() - start
    return {
        "images": n,
        "rows_per_image": rows,
        "shard_seconds": round(shard_s, 3),
        "per_file_seconds": round(files_s, 3),
        "speedup": round(files_s / shard_s, 2),
        "gzip_shard_seconds": round(gzip_s, 3),
        "gzip_speedup": round(files_s / gzip_s, 2),
        "gzip_bytes_vs_per_file": round(du_bytes([gz]) / du_bytes(sorted(files.iterdir())), 3),
        "note": "all read from the page cache (files just written)",
    }


def _disk_at_scale(tmp: Path, n: int = 1000, dim: int = 512) -> dict:
    """Shard vs per-image files at a realistic shard size: 1,000 images with the reference's typical row counts
    (globals 1, blocks 27 as for 640x480, objects 300 proposals)."""
    rng = np.random.default_rng(1)
    out = {}
    for kind, rows in (("globals", 1), ("blocks", 27), ("objects", 300)):
        ids = list(range(1, n + 1))
        shard = tmp / f"scale_{kind}" / "shard-000.h5"
        with ShardWriter(shard, ids, kind, dim, {"bench": True}) as w:
            for image_id in ids:
                e = rng.normal(size=(rows, dim)).astype(np.float32)
                e /= np.linalg.norm(e, axis=1, keepdims=True)
                boxes = rng.uniform(0, 500, size=(rows, 4)).astype(np.float32) if kind != "globals" else None
                score = rng.uniform(size=rows).astype(np.float32) if kind == "objects" else None
                w.add(image_id, e, boxes, score)
            w.finalize(ids)
        files = _per_file(ShardReader(shard), tmp / f"scale_{kind}_files", kind)
        shard_b, files_b = du_bytes([shard]), du_bytes(files)
        out[kind] = {
            "images": n,
            "rows_per_image": rows,
            "shard_bytes": shard_b,
            "per_file_bytes": files_b,
            "ratio": round(shard_b / files_b, 3),
        }
    return out


def run(scale: float = 1.0) -> dict:
    result: dict = {
        "benchmark": "oake",
        "model": f"{MODEL} (random weights)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }
    n_images = max(4, int(16 * scale))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ann, images, props = generated.images_with_proposals(
            tmp, n_images, ((640, 480), (480, 360), (320, 240)), PROPOSALS_PER_IMAGE, 120
        )

        clip = load_clip(MODEL, "random", device=resolve_device("auto"))
        device = resolve_device("auto")
        enc = vision.ObjectAwareEncoder(clip.model.visual)
        pf = proposal_file.ProposalFile(props)
        kinds = {
            "globals": (oake_globals.prepare, oake_globals.make_forward(clip.model.visual, device, "fp16")),
            "blocks": (blocks.make_prepare("centre"), blocks.make_forward(clip.model.visual, device, "fp16")),
            "objects": (objects.make_prepare(pf, enc.grid, None), objects.make_forward(enc, device, "fp16")),
        }
        items = extract.list_images(ann, images)
        result["throughput"], result["disk"] = {}, {}
        for kind, (prepare, forward) in kinds.items():
            out = tmp / kind / "shard-000.h5"
            args = _args(ann, images, out)
            attrs = {**clip.provenance(), "bench": True}
            prepared = []
            for it in items:
                with Image.open(it.path) as im:
                    prepared.append({"image_id": it.image_id, **prepare(it, im.convert("RGB"))})
            forward(prepared[:1])  # warm-up (allocator, kernels) paid by neither timing
            bare = _bare(forward, prepared, args.batch_images)
            stats = extract.run(args, kind, clip.embed_dim, prepare, forward, attrs)
            result["throughput"][kind] = {
                "extractor_images_per_s": round(stats["images_per_s"], 3),
                "bare_forward_images_per_s": round(bare, 3),
                "ratio": round(stats["images_per_s"] / bare, 3),
            }
            reader = ShardReader(out)
            files = _per_file(reader, tmp / f"{kind}_files", kind)
            shard_b, files_b = du_bytes([out]), du_bytes(files)
            result["disk"][kind] = {
                "images": len(files),
                "shard_bytes": shard_b,
                "per_file_bytes": files_b,
                "ratio": round(shard_b / files_b, 3),
            }
            if kind == "objects":
                out8 = tmp / "objects_int8" / "shard-000.h5"
                extract.run(_args(ann, images, out8), kind, clip.embed_dim, prepare, forward, attrs, storage="int8")
                r8 = ShardReader(out8)
                cos = 1.0
                for image_id in reader.image_ids:
                    a, b = reader.get(int(image_id))["embeddings"], r8.get(int(image_id))["embeddings"]
                    if len(a):
                        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
                        cos = min(cos, float(c.min()))
                result["disk"]["objects_int8"] = {
                    "shard_bytes": du_bytes([out8]),
                    "ratio_vs_float16_shard": round(du_bytes([out8]) / shard_b, 3),
                    "min_cosine_vs_float16": round(cos, 5),
                }
        result["disk_at_scale"] = _disk_at_scale(tmp)
        result["random_read"] = _random_read(tmp)
    return result
