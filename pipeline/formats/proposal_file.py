"""The proposals contract file ``results/proposals/{dataset}/{split}.h5`` (read by OAKE objects).

Layout: ``image_ids int64 [N]`` ascending, ``offsets int64 [N+1]`` (CSR), ``boxes float32 [M, 4]`` xyxy in original
pixels, ``scores float32 [M]``; attrs record the producer (model, annotation hash). Written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.core import atomic


class ProposalFileError(ValueError):
    """A proposals file that is missing, malformed or does not fit the annotation file."""


def write(
    path: str | Path,
    image_ids: Sequence[int],
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write per-image ``boxes [n, 4]`` and ``scores [n]`` (any image order; stored by ascending id)."""
    if not (len(image_ids) == len(boxes) == len(scores)):
        raise ProposalFileError(f"{path}: {len(image_ids)} ids, {len(boxes)} box arrays, {len(scores)} score arrays")
    order = np.argsort(np.asarray(image_ids, dtype=np.int64), kind="stable")
    ids = np.asarray(image_ids, dtype=np.int64)[order]
    if len(np.unique(ids)) != len(ids):
        raise ProposalFileError(f"{path}: repeated image ids")
    b = [np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in order]
    s = [np.asarray(scores[i], dtype=np.float32).reshape(-1) for i in order]
    for image_id, bi, si in zip(ids, b, s, strict=True):
        if len(bi) != len(si):
            raise ProposalFileError(f"{path}: image {image_id} has {len(bi)} boxes and {len(si)} scores")
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in b])]).astype(np.int64)
    with atomic.atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image_ids", data=ids)
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("boxes", data=np.concatenate(b) if b else np.zeros((0, 4), np.float32))
            f.create_dataset("scores", data=np.concatenate(s) if s else np.zeros((0,), np.float32))
            for k, v in (attrs or {}).items():
                f.attrs[k] = v


def data_nbytes(images: int, boxes: int) -> int:
    """Bytes of the datasets of a proposals file of ``images`` images and ``boxes`` boxes in all (HDF5's headers and
    the attrs come on top)."""
    return images * 8 + (images + 1) * 8 + boxes * (4 * 4 + 4)


class ProposalFile:
    """Read access by image id; opens lazily and reopens after a fork (DataLoader workers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ProposalFileError(f"{self.path}: proposals file not found")
        self._file: h5py.File | None = None
        self._pid = -1
        f = self._h5()
        try:
            self.image_ids = f["image_ids"][()]
            self.offsets = f["offsets"][()]
            self.attrs = dict(f.attrs)
            if len(self.offsets) != len(self.image_ids) + 1 or self.offsets[-1] != f["boxes"].shape[0]:
                raise ProposalFileError(f"{self.path}: offsets do not match the boxes")
        except KeyError as exc:
            raise ProposalFileError(f"{self.path}: not a proposals file (missing {exc})") from exc
        self._index = {int(i): k for k, i in enumerate(self.image_ids)}

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise ProposalFileError(f"{self.path}: unreadable proposals file ({exc})") from exc
            self._pid = os.getpid()
        return self._file

    def __contains__(self, image_id: int) -> bool:
        return int(image_id) in self._index

    def get(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``boxes [n, 4]`` float32 xyxy and ``scores [n]`` float32 of one image."""
        if int(image_id) not in self._index:
            raise ProposalFileError(f"{self.path}: no proposals for image {image_id}")
        k = self._index[int(image_id)]
        lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
        f = self._h5()
        return f["boxes"][lo:hi], f["scores"][lo:hi]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state
