"""Bytes of the run's outputs before they exist, and the state of those that do.

Feature shards and proposals files: the datasets' bytes from their formats' homes
(:func:`pipeline.formats.feature_cache.layout.data_nbytes`, :func:`pipeline.formats.proposal_file.data_nbytes`)
plus HDF5's own headers and attrs (:data:`SHARD_OVERHEAD`, :data:`PROPOSALS_OVERHEAD`, measured on files the
writers wrote). Checkpoints: 4 bytes per parameter and buffer of the built model plus the prompt embeddings
``final.pth`` carries. Detections: :data:`DETECTION_BYTES` per detection of the JSON list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.formats import proposal_file
from pipeline.formats.feature_cache import layout

#: HDF5 superblock, object headers and attrs of a final shard, by kind: constant in 2 KiB metadata blocks, measured on
#: shards the writer wrote (4-300 images, dims 64 and 512, 1-100 rows per image, the extractors' attrs); shards of 1-2
#: images pack their few data bytes into the metadata blocks and come out up to 1.3 KiB smaller
SHARD_OVERHEAD = {"globals": 8192, "blocks": 10240, "objects": 10240}
#: HDF5 headers and the producer's attrs of a proposals file (measured likewise: 8 KiB from 48 images up)
PROPOSALS_OVERHEAD = 8192
#: bytes of one detection in detections.json (``{"image_id", "category_id", "bbox": [4 floats], "score"}``): 88.3 on
#: average in the demo's dry run (8 val images x 300 detections)
DETECTION_BYTES = 88


def shard_bytes(kind: str, storage: str, dim: int, images: int, rows: int) -> int:
    """Predicted bytes of a final uncompressed shard."""
    return layout.data_nbytes(kind, storage, dim, images, rows) + SHARD_OVERHEAD[kind]


def proposals_bytes(images: int, boxes: int) -> int:
    """Predicted bytes of a proposals file."""
    return proposal_file.data_nbytes(images, boxes) + PROPOSALS_OVERHEAD


@dataclass(frozen=True)
class State:
    """What exists of one planned output: ``done`` (the file), ``partial`` (``<file>.partial`` of a shard being
    written or interrupted) or ``todo``; ``bytes`` on disk when done; ``seconds`` measured by Snakemake's
    benchmark file of the job when there is one."""

    state: str
    bytes: int | None
    seconds: float | None


def benchmark_seconds(path: Path) -> float | None:
    """The ``s`` column of a Snakemake benchmark file (the mean over its rows), None when absent or unreadable."""
    try:
        lines = Path(path).read_text().splitlines()
        column = lines[0].split("\t").index("s")
        values = [float(line.split("\t")[column]) for line in lines[1:] if line.strip()]
    except (OSError, ValueError, IndexError):
        return None
    return sum(values) / len(values) if values else None


def state(output: Path, benchmark: Path | None) -> State:
    """The :class:`State` of a planned output file."""
    seconds = benchmark_seconds(benchmark) if benchmark is not None else None
    if output.exists():
        return State("done", os.stat(output).st_size, seconds)
    if Path(f"{output}.partial").exists():
        return State("partial", None, seconds)
    return State("todo", None, seconds)


def checkpoint_bytes(
    config: str, options: Mapping[str, Any], prompts: Sequence[str], num_classes: int, num_base: int, dim: int
) -> int:
    """Bytes of ``final.pth`` of a detector config (a shipped name or a file, with dotted-key ``options``) reading
    the prompt kinds ``prompts``: its model built on the meta device (no memory, no init), 4 bytes per parameter
    and persistent buffer, plus one ``[num_classes, dim]`` float32 prompt table per classifier."""
    import tempfile

    import torch
    import torch.nn.functional as F
    from mmdet.registry import MODELS

    from pipeline.formats import prompt_file
    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import classifier_nodes, detector_config

    register_modules()
    names = [f"class {i}" for i in range(num_classes)]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for kind in prompts:
            files[kind] = str(Path(tmp) / f"{kind}.pth")
            emb = F.normalize(torch.randn(num_classes, dim), dim=-1)
            extra = {"scaler": 20.0, "bias": 4.0} if kind == "ml" else {}
            prompt_file.save(files[kind], names, emb, {"kind": "plan"}, **extra)
        cfg = detector_config(config, names=names, num_base=num_base, prompts=files, options=dict(options), cuda=False)
        with torch.device("meta"):
            model = MODELS.build(cfg.model)
        tables = len(classifier_nodes(cfg))
    state = model.state_dict().values()
    weights = sum(t.numel() * t.element_size() for t in state if isinstance(t, torch.Tensor))
    return int(weights + tables * num_classes * dim * 4)
