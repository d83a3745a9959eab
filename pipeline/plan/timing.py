"""Throughputs measured by the project's benchmarks (``python -m benchmarks stages``: ``stages.json`` under
``results/bench/`` on a CPU, under ``results/gpu_check/bench/`` from ``tools/gpu_check.sh`` on a GPU), matched to
the device a plan is made for.

``stages.json``::

    {"benchmark": "stages", "device": "cpu" | "cuda", "device_name": str, "threads": int,
     "oake": {clip model: {kind: {"images", "rows", "seconds", "images_per_s", "rows_per_s"}}},
     "train": {experiment config: {"s_per_iter", "images_per_iter", "image_size": [h, w]}}}

A device name of a plan is ``cpu`` or a GPU's short name (``h100``, ``a100``, ...), matched case-insensitively
inside the benchmark's ``device_name``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

UNMEASURED = "unmeasured"


@dataclass(frozen=True)
class Rates:
    """The throughputs of one device: ``oake[model][kind]`` rows/s, ``train[config]`` (s per iteration, images
    per iteration), ``source`` = the benchmark files read."""

    device: str
    oake: dict[str, dict[str, float]] = field(default_factory=dict)
    train: dict[str, tuple[float, int]] = field(default_factory=dict)
    source: tuple[str, ...] = ()

    def oake_seconds(self, model: str, kind: str, rows: int) -> float | None:
        rate = self.oake.get(model, {}).get(kind)
        return rows / rate if rate else None

    def train_seconds(self, experiment: str, images: int) -> float | None:
        """Seconds of a training that processes ``images`` images in all (iterations x images per step)."""
        if experiment not in self.train:
            return None
        seconds, per_iter = self.train[experiment]
        return images / per_iter * seconds


def matches(bench: dict, device: str) -> bool:
    """Whether a benchmark result was measured on ``device`` (``cpu`` or a GPU's short name)."""
    if device == "cpu":
        return bench.get("device") == "cpu"
    return bench.get("device") == "cuda" and device.lower() in str(bench.get("device_name", "")).lower()


def load(device: str, folders: Sequence[Path]) -> Rates:
    """The rates of ``device`` from every ``stages.json`` found in ``folders`` (later folders win)."""
    oake: dict[str, dict[str, float]] = {}
    train: dict[str, tuple[float, int]] = {}
    source = []
    for folder in folders:
        path = Path(folder) / "stages.json"
        if not path.is_file():
            continue
        try:
            bench = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: not a benchmark result ({exc})") from exc
        if not matches(bench, device):
            continue
        source.append(str(path))
        for model, kinds in bench.get("oake", {}).items():
            oake.setdefault(model, {}).update({k: float(v["rows_per_s"]) for k, v in kinds.items()})
        for config, v in bench.get("train", {}).items():
            train[config] = (float(v["s_per_iter"]), int(v["images_per_iter"]))
    return Rates(device=device, oake=oake, train=train, source=tuple(source))
