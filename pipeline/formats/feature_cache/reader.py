"""Random access to the rows of one final feature-cache shard (layout: :mod:`pipeline.formats.feature_cache.layout`).

The index (``image_ids``, ``offsets``, ``done``, attrs) is read once at construction; row datasets that are
contiguous and uncompressed are memory-mapped, compressed ones are read through h5py. Rows come back as float32.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.formats.feature_cache.layout import _ROW_NAMES, CacheError, _py


def _memmap(path: Path, d: h5py.Dataset) -> Any:
    """A read-only ``np.memmap`` of a contiguous, uncompressed dataset (microsecond slicing); else the dataset."""
    offset = d.id.get_offset()
    if offset is None or d.chunks is not None or d.compression is not None or d.size == 0:
        return d
    return np.memmap(path, dtype=d.dtype, mode="r", offset=offset, shape=d.shape)


def _float32(rows: Any) -> np.ndarray:
    """A float32 copy; torch's vectorised half -> float conversion is about 7x numpy's."""
    import torch  # here: a stage's parser imports this package, and torch takes seconds to import

    return torch.from_numpy(np.array(rows)).float().numpy()


class ShardReader:
    """Random access to the rows of one final shard.

    The HDF5 file is opened on first ``get`` and reopened when ``os.getpid()`` changed (DataLoader workers after
    fork); pickling drops the handle. Skipped images are in ``image_ids`` but not ``in`` the reader.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.name.endswith(".partial"):
            raise CacheError(f"{self.path}: readers never open partial shards")
        if not self.path.is_file():
            raise CacheError(f"{self.path}: shard does not exist (not finalized yet?)")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: _py(v) for k, v in f.attrs.items()}
                self.image_ids, self._offsets, done = f["image_ids"][:], f["offsets"][:], f["done"][:]
                self.kind, self.dim, self.storage = self.attrs["kind"], int(self.attrs["dim"]), self.attrs["storage"]
                self.skipped = {int(s["image_id"]): s["reason"] for s in json.loads(self.attrs["skipped"])}
        except Exception as exc:
            raise CacheError(f"{self.path}: not a readable shard ({exc!r})") from exc
        if self._offsets.shape != (len(self.image_ids) + 1,) or not np.all(done == 1):
            raise CacheError(f"{self.path}: incomplete shard")
        self._h5: h5py.File | None = None
        self._pid = -1
        self._rows: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _index(self, image_id: int) -> int:
        k = int(np.searchsorted(self.image_ids, image_id))
        return k if k < len(self.image_ids) and self.image_ids[k] == image_id else -1

    def __contains__(self, image_id: object) -> bool:
        ok = isinstance(image_id, int | np.integer)
        return ok and self._index(int(image_id)) >= 0 and int(image_id) not in self.skipped

    def _file(self) -> h5py.File:
        if self._h5 is not None and self._pid != os.getpid():  # inherited through fork: never share it
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=0)  # no cache: partial direct reads
            self._pid = os.getpid()
            self._rows = {name: _memmap(self.path, d) for name, d in self._h5.items() if name in _ROW_NAMES}
        return self._h5

    def get(self, image_id: int) -> dict[str, np.ndarray]:
        """``{"embeddings": float32 [n, D], "boxes": float32 [n, 4], "objectness": float32 [n]}`` (per kind)."""
        k = self._index(int(image_id))
        if k < 0:
            raise KeyError(f"image {image_id} is not in shard {self.path}")
        if int(image_id) in self.skipped:
            raise KeyError(f"image {image_id} was skipped in shard {self.path}: {self.skipped[int(image_id)]}")
        self._file()
        rows, a, b = self._rows, int(self._offsets[k]), int(self._offsets[k + 1])
        out = {"embeddings": _float32(rows["embeddings"][a:b])}
        if self.storage == "int8":
            out["embeddings"] *= rows["scales"][a:b][:, None]
        for name in ("boxes", "objectness"):
            if name in rows:
                out[name] = _float32(rows[name][a:b])
        return out

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None, "_pid": -1, "_rows": {}}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
