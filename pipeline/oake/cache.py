"""HDF5 feature caches of the OAKE stage: one shard file per (kind, split, shard index).

Layout of a final shard (CSR over images): ``image_ids`` int64 [N] ascending, ``offsets`` int64 [N+1] (rows of
image k are ``offsets[k]:offsets[k+1]``), ``embeddings`` float16 [M, D] (or int8 [M, D] plus ``scales`` float32 [M]),
``boxes`` float32 [M, 4] xyxy pixels (blocks, objects), ``objectness`` float16 [M] (objects), ``done`` uint8 [N]
and ``commit_state`` int64 [7] (row count, done count and CRC32 checksums, see ``STATE_FIELDS``). File attrs: the
caller's attrs plus ``kind``, ``dim``, ``storage``, ``format_version`` and ``skipped`` (JSON list).

Final shards are repacked: every dataset contiguous and exactly sized, so readers memory-map the rows (or, with
``compression="gzip"``, the row datasets shuffled + gzip-1 in chunks of 256 rows: ~13% smaller, slower reads).

Crash safety: a writer only touches ``<path>.partial`` (and ``<path>.final`` while repacking it). ``add`` buffers
rows in memory; ``commit`` appends them and syncs (flush + fsync), then sets ``done``/``offsets``/``skipped`` and
syncs, then writes ``commit_state`` and syncs. ``commit_state`` is the single source of truth: on reopen, rows past
its row count are cut off and the committed prefix is checked against its checksums; any failure (unreadable file,
torn metadata, checksum mismatch) restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

log = logging.getLogger(__name__)

KINDS = ("globals", "blocks", "objects")
STORAGES = ("float16", "int8")
FORMAT_VERSION = 1
NORM_TOL = 1e-2
RESERVED_ATTRS = ("kind", "dim", "storage", "format_version", "skipped")
STATE_FIELDS = ("committed_rows", "n_done", "crc_embeddings", "crc_scales", "crc_boxes", "crc_objectness", "crc_meta")
_BLOCK = 1 << 16  # rows per read when scanning a shard
_ROW_NAMES = ("embeddings", "scales", "boxes", "objectness")
COMPRESSIONS = (None, "gzip")
COMPRESSED_CHUNK = 256


class CacheError(ValueError):
    """A feature cache shard is missing, incomplete, inconsistent or misused."""


def shard_image_ids(image_ids: Sequence[int], shards: int, index: int) -> list[int]:
    """Sorted ids; shard ``index`` holds those whose position in the sorted list mod ``shards`` == index."""
    if shards < 1 or not 0 <= index < shards:
        raise CacheError(f"shard index {index} out of range for {shards} shards")
    ids = sorted(int(i) for i in image_ids)
    if len(set(ids)) != len(ids):
        raise CacheError("duplicate image ids")
    return ids[index::shards]


def _row_datasets(kind: str, storage: str, dim: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Row-aligned datasets of a shard: name -> (dtype, shape of one row)."""
    specs = {
        "embeddings": (storage, (dim,)),
        "scales": ("float32", ()),
        "boxes": ("float32", (4,)),
        "objectness": ("float16", ()),
    }
    used = (True, storage == "int8", kind != "globals", kind == "objects")
    return {name: spec for (name, spec), keep in zip(specs.items(), used, strict=True) if keep}


def _py(value: Any) -> Any:
    """HDF5 attr / numpy scalar -> plain Python value (str, int, float, bool)."""
    return value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic) else value


def _normalise_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: _py(value) for key, value in attrs.items()}
    for key, value in out.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool) or key in RESERVED_ATTRS:
            raise CacheError(f"attr {key!r}: reserved name, or value not str/int/float/bool ({type(value).__name__})")
    return out


def _skipped_json(skipped: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{"image_id": int(s["image_id"]), "reason": str(s["reason"])} for s in skipped], sort_keys=True)


def _meta_crc(offsets: np.ndarray, skipped_json: str) -> int:
    return zlib.crc32(skipped_json.encode(), zlib.crc32(np.ascontiguousarray(offsets, dtype=np.int64)))


def _crc(block: np.ndarray, value: int) -> int:
    return zlib.crc32(np.ascontiguousarray(block), value)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_numpy(x: Any, dtype: type) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _quantise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n, D] -> (int8 [n, D], float32 [n]) with row = int8 * scale, scale = max|row| / 127."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = (np.abs(rows).max(axis=1) / 127.0).astype(np.float32)
        q = np.where(scale[:, None] > 0, rows / scale[:, None], 0.0)
        q = np.nan_to_num(np.clip(np.rint(q), -127, 127), nan=0.0).astype(np.int8)
    return q, scale


def _images(mask: np.ndarray, ids: np.ndarray, offsets: np.ndarray | None = None) -> list[int]:
    """Image ids (at most 10) of the set entries of ``mask``: a per-image mask, or a per-row one given ``offsets``."""
    idx = np.flatnonzero(mask)
    idx = idx if offsets is None else np.searchsorted(offsets, idx, side="right") - 1
    return sorted({int(i) for i in ids[idx]})[:10]


def _problems(f: h5py.File, expected_ids: Sequence[int] | None = None) -> list[str]:
    """Everything wrong with a complete shard opened as ``f`` (empty list = good)."""
    try:
        kind, dim, storage = _py(f.attrs["kind"]), int(f.attrs["dim"]), _py(f.attrs["storage"])
        skipped = [int(s["image_id"]) for s in json.loads(_py(f.attrs["skipped"]))]
        specs = _row_datasets(kind, storage, dim)
        ids, offsets, done, rows = f["image_ids"][:], f["offsets"][:], f["done"][:], {n: f[n] for n in specs}
    except Exception as exc:  # missing attrs / datasets, unknown kind or storage
        return [f"missing or malformed metadata: {exc!r}"]
    if np.any(np.diff(ids) <= 0) or offsets.shape != (len(ids) + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        return ["image_ids not strictly ascending or offsets not a CSR index over them"]
    if done.shape != ids.shape:
        return [f"done has shape {done.shape}, expected {ids.shape}"]
    m = int(offsets[-1])
    bad = [f"{n} {d.dtype}{d.shape}" for n, d in rows.items() if (d.dtype, d.shape) != (specs[n][0], (m, *specs[n][1]))]
    if bad:
        return [f"row datasets inconsistent with offsets[-1] = {m}: {', '.join(bad)}"]
    problems = [] if np.all(done == 1) else [f"images not done: {_images(done != 1, ids)}"]
    counts, is_skipped = np.diff(offsets), np.isin(ids, skipped)
    wrong = counts != np.where(is_skipped, 0, 1) if kind == "globals" else is_skipped & (counts != 0)
    if wrong.any():
        problems.append(f"wrong row counts (skipped: 0, globals: 1) for images {_images(wrong, ids)}")
    crcs, nonfinite, nonunit = dict.fromkeys(rows, 0), np.zeros(m, bool), np.zeros(m, bool)
    for a in range(0, m, _BLOCK):
        block = {name: d[a : a + _BLOCK] for name, d in rows.items()}
        crcs = {name: _crc(block[name], crc) for name, crc in crcs.items()}
        with np.errstate(invalid="ignore", over="ignore"):
            emb = block["embeddings"].astype(np.float32) * block.get("scales", np.ones(1, np.float32))[:, None]
            finite = np.all([np.isfinite(v.reshape(len(emb), -1)).all(1) for v in (emb, *block.values())], axis=0)
            norms = np.linalg.norm(np.where(finite[:, None], emb, 0), axis=1)
        nonfinite[a : a + len(emb)] = ~finite
        nonunit[a : a + len(emb)] = finite & (np.abs(norms - 1) > NORM_TOL)
    if nonfinite.any():
        problems.append(f"non-finite rows in images {_images(nonfinite, ids, offsets)}")
    if nonunit.any():
        problems.append(f"rows not unit-norm (tol {NORM_TOL}) in images {_images(nonunit, ids, offsets)}")
    if "commit_state" in f:
        state = dict(zip(STATE_FIELDS, f["commit_state"][:].tolist(), strict=True))
        changed = [n for n in rows if state[f"crc_{n}"] != crcs[n]] or ["row count"] * (state["committed_rows"] != m)
        if changed:
            problems.append(f"checksum mismatch in {changed} (modified or corrupted after writing)")
    exp = None if expected_ids is None else np.array(sorted(int(i) for i in expected_ids), dtype=np.int64)
    if exp is not None and not np.array_equal(exp, ids):
        missing, extra = np.setdiff1d(exp, ids)[:10].tolist(), np.setdiff1d(ids, exp)[:10].tolist()
        problems.append(f"image_ids differ from expected: missing {missing}, unexpected {extra}")
    return problems


def verify_shard(path: str | Path, expected_ids: Sequence[int] | None = None) -> list[str]:
    """Problems of a final shard as readable strings (empty list = good): unreadable file, missing datasets,
    offsets inconsistent with row counts, non-finite rows, rows not unit-norm (fp16 tol), ids != expected."""
    try:
        with h5py.File(path, "r") as f:
            return [f"{path}: {p}" for p in _problems(f, expected_ids)]
    except Exception as exc:
        return [f"{path}: unreadable ({exc!r})"]


class ShardWriter:
    """Writes one shard through ``<path>.partial``, resumable after a crash; see the module docstring.

    ``add``/``skip`` must be called for the ids of ``pending`` in ascending order. ``commit_every`` images trigger an
    automatic ``commit``. ``fsync=False`` skips the fsyncs (survives a killed process, not a power cut).
    """

    def __init__(
        self,
        path: str | Path,
        image_ids: Sequence[int],
        kind: str,
        dim: int,
        attrs: Mapping[str, Any],
        storage: str = "float16",
        commit_every: int = 64,
        fsync: bool = True,
        compression: str | None = None,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise CacheError(f"compression {compression!r} not in {COMPRESSIONS}")
        self.compression = compression
        if kind not in KINDS or storage not in STORAGES or int(dim) < 1 or commit_every < 1:
            raise CacheError(f"bad shard spec kind={kind!r} storage={storage!r} dim={dim} commit_every={commit_every}")
        self.path = Path(path)
        self.partial_path = Path(f"{self.path}.partial")
        self.kind, self.dim, self.storage, self.commit_every, self._fsync = kind, int(dim), storage, commit_every, fsync
        self.image_ids = np.array(sorted(int(i) for i in image_ids), dtype=np.int64)
        if len(np.unique(self.image_ids)) != len(self.image_ids):
            raise CacheError(f"{self.path}: duplicate image ids")
        self.attrs = {
            **_normalise_attrs(attrs),
            "kind": kind,
            "dim": self.dim,
            "storage": storage,
            "format_version": FORMAT_VERSION,
        }
        self._specs = _row_datasets(kind, storage, self.dim)
        self._buf: list[tuple[int, dict[str, np.ndarray] | None, str | None]] = []  # (id, rows | None, skip reason)
        self._h5: h5py.File | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        reason = self._try_resume() if self.partial_path.exists() else None
        if self._h5 is None:
            if reason:
                log.warning("%s: discarding partial shard and starting fresh: %s", self.partial_path, reason)
            self._create()
        elif self.n_done:
            log.info("%s: resuming, %d of %d images already done", self.partial_path, self.n_done, len(self.image_ids))

    # ---- state -------------------------------------------------------------------------------------------------
    @property
    def pending(self) -> list[int]:
        """Image ids still to ``add``/``skip``, ascending."""
        return self.image_ids[self.n_done + len(self._buf) :].tolist()

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Committed and buffered skips as ``{"image_id", "reason"}``."""
        return self._skipped + [{"image_id": i, "reason": r} for i, rows, r in self._buf if rows is None]

    def _reset_state(self) -> None:
        self.n_done, self.rows, self._skipped = 0, 0, []
        self._offsets = np.zeros(len(self.image_ids) + 1, dtype=np.int64)
        self._crcs = {name: 0 for name in self._specs}

    def _state_vector(self) -> np.ndarray:
        meta = _meta_crc(self._offsets[: self.n_done + 1], _skipped_json(self._skipped))
        crcs = [self._crcs.get(n, 0) for n in ("embeddings", "scales", "boxes", "objectness")]
        return np.array([self.rows, self.n_done, *crcs, meta], dtype=np.int64)

    def _sync(self) -> None:
        """Flush HDF5 buffers to the OS and (unless disabled) fsync the partial file."""
        self._h5.flush()
        if self._fsync:
            _fsync(self.partial_path)

    def _create(self) -> None:
        self.partial_path.unlink(missing_ok=True)
        self._reset_state()
        f = self._h5 = h5py.File(self.partial_path, "w", rdcc_nbytes=8 << 20)
        f.attrs.update({**self.attrs, "skipped": "[]"})
        n = len(self.image_ids)
        f.create_dataset("image_ids", data=self.image_ids)
        f.create_dataset("offsets", data=self._offsets)
        f.create_dataset("done", data=np.zeros(n, dtype=np.uint8))
        chunk = max(1, min(1024, (1 << 20) // (2 * self.dim), n if self.kind == "globals" else 1024))
        for name, (dtype, row) in self._specs.items():
            f.create_dataset(name, shape=(0, *row), maxshape=(None, *row), chunks=(chunk, *row), dtype=dtype)
        f.create_dataset("commit_state", data=self._state_vector()).attrs["fields"] = ",".join(STATE_FIELDS)
        self._sync()

    def _try_resume(self) -> str | None:
        """Open the partial if it is a consistent earlier run of this shard; else return why not (file closed)."""
        try:
            f = h5py.File(self.partial_path, "r+", rdcc_nbytes=8 << 20)
        except BlockingIOError as exc:
            raise CacheError(f"{self.partial_path} is being written by another process") from exc
        except Exception as exc:
            return f"unreadable ({exc!r})"
        try:
            old = {k: _py(v) for k, v in f.attrs.items() if k != "skipped"}
            if {k: (type(v), v) for k, v in old.items()} != {k: (type(v), v) for k, v in self.attrs.items()}:
                diff = sorted(k for k in old.keys() | self.attrs.keys() if old.get(k) != self.attrs.get(k))
                return "attrs differ: " + ", ".join(f"{k}: {old.get(k)!r} -> {self.attrs.get(k)!r}" for k in diff)
            if not np.array_equal(f["image_ids"][:], self.image_ids):
                return "image_ids differ"
            state = dict(zip(STATE_FIELDS, (int(v) for v in f["commit_state"][:]), strict=True))
            self._reset_state()
            self.rows, self.n_done = state["committed_rows"], state["n_done"]
            offsets, done = f["offsets"][:], f["done"][:]
            if offsets.shape != self._offsets.shape or done.shape != self.image_ids.shape:
                return "offsets/done have wrong shapes"
            if not 0 <= self.n_done <= len(done) or not np.all(done[: self.n_done] == 1):
                return "done flags inconsistent with commit_state"
            self._offsets[: self.n_done + 1] = offsets[: self.n_done + 1]
            prefix = set(self.image_ids[: self.n_done].tolist())
            self._skipped = [s for s in json.loads(_py(f.attrs["skipped"])) if s["image_id"] in prefix]
            if _meta_crc(self._offsets[: self.n_done + 1], _skipped_json(self._skipped)) != state["crc_meta"]:
                return "offsets/skipped do not match their checksum (torn commit)"
            if int(self._offsets[self.n_done]) != self.rows:
                return "offsets inconsistent with committed_rows"
            for name, (dtype, row) in self._specs.items():
                ds = f[name]
                if ds.dtype != np.dtype(dtype) or ds.shape[1:] != row or ds.shape[0] < self.rows:
                    return f"dataset {name} is {ds.dtype}{ds.shape}, expected at least {self.rows} rows of {dtype}{row}"
                for a in range(0, self.rows, _BLOCK):
                    self._crcs[name] = _crc(ds[a : min(self.rows, a + _BLOCK)], self._crcs[name])
                if self._crcs[name] != state[f"crc_{name}"]:
                    return f"committed rows of {name} do not match their checksum"
            # Cut off everything after the last commit: rows appended later, done/offsets/skipped of a torn commit.
            for name in self._specs:
                f[name].resize(self.rows, axis=0)
            if np.any(done[self.n_done :]) or np.any(offsets[self.n_done + 1 :]):
                f["done"][self.n_done :] = 0
                f["offsets"][self.n_done + 1 :] = 0
            if _py(f.attrs["skipped"]) != _skipped_json(self._skipped):
                f.attrs["skipped"] = _skipped_json(self._skipped)
            self._h5 = f
            self._sync()
            return None
        except Exception as exc:
            self._h5 = None
            return f"corrupt ({exc!r})"
        finally:
            if self._h5 is None:
                f.close()

    # ---- writing -----------------------------------------------------------------------------------------------
    def _check_next(self, image_id: int) -> int:
        if self._h5 is None:
            raise CacheError(f"{self.partial_path}: writer is closed")
        k, image_id = self.n_done + len(self._buf), int(image_id)
        if k >= len(self.image_ids) or self.image_ids[k] != image_id:
            nxt = int(self.image_ids[k]) if k < len(self.image_ids) else None
            raise CacheError(f"{self.path}: image {image_id} is not the next pending image (expected {nxt})")
        return image_id

    def add(self, image_id: int, embeddings: Any, boxes: Any = None, objectness: Any = None) -> None:
        """Rows of one image: ``embeddings`` [n, D] (unit-norm), ``boxes`` [n, 4] xyxy pixels (blocks, objects),
        ``objectness`` [n] (objects); numpy arrays or torch tensors. globals need n == 1; n may be 0 otherwise."""
        image_id = self._check_next(image_id)
        emb = _to_numpy(embeddings, np.float32)
        n = emb.shape[0] if emb.ndim == 2 else -1
        where = f"{self.path}: image {image_id}"
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise CacheError(f"{where}: embeddings must be [n, {self.dim}], got {list(emb.shape)}")
        if self.kind == "globals" and n != 1:
            raise CacheError(f"{where}: globals need exactly 1 row, got {n}")
        if (boxes is None) != (self.kind == "globals") or (objectness is None) != (self.kind != "objects"):
            raise CacheError(
                f"{where}: {self.kind} take boxes={self.kind != 'globals'} objectness={self.kind == 'objects'}"
            )
        rows: dict[str, np.ndarray] = {}
        if self.storage == "int8":
            rows["embeddings"], rows["scales"] = _quantise(emb)
        else:
            with np.errstate(over="ignore"):
                rows["embeddings"] = emb.astype(np.float16)
        for name, value, shape in (("boxes", boxes, (n, 4)), ("objectness", objectness, (n,))):
            if value is not None:
                arr = _to_numpy(value, np.float32)
                if arr.shape != shape:
                    raise CacheError(f"{where}: {name} must be {list(shape)}, got {list(arr.shape)}")
                rows[name] = arr.astype(self._specs[name][0])
        self._buf.append((image_id, rows, None))
        if len(self._buf) >= self.commit_every:
            self.commit()

    def skip(self, image_id: int, reason: str) -> None:
        """Mark ``image_id`` done with 0 rows because of bad input; recorded in the ``skipped`` attr."""
        image_id = self._check_next(image_id)
        log.warning("%s: skipping image %d: %s", self.path, image_id, reason)
        self._buf.append((image_id, None, str(reason)))
        if len(self._buf) >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Make every image added so far durable (rows, then done/offsets/skipped, then commit_state; sync each)."""
        if self._h5 is None:
            raise CacheError(f"{self.partial_path}: writer is closed")
        if not self._buf:
            return
        f, a, r0 = self._h5, self.n_done, self.rows
        counts = np.array([0 if rows is None else len(rows["embeddings"]) for _, rows, _ in self._buf])
        r1 = r0 + int(counts.sum())
        crcs = dict(self._crcs)
        if r1 > r0:
            for name in self._specs:
                block = np.concatenate([rows[name] for _, rows, _ in self._buf if rows is not None])
                f[name].resize(r1, axis=0)
                f[name][r0:r1] = block
                crcs[name] = _crc(block, crcs[name])
            self._sync()
        b = a + len(self._buf)
        offsets = self._offsets.copy()
        offsets[a + 1 : b + 1] = r0 + np.cumsum(counts)
        skipped = self.skipped
        f["done"][a:b] = 1
        f["offsets"][a + 1 : b + 1] = offsets[a + 1 : b + 1]
        if len(skipped) != len(self._skipped):
            f.attrs["skipped"] = _skipped_json(skipped)
        self._sync()
        self.n_done, self.rows, self._offsets, self._skipped, self._crcs = b, r1, offsets, skipped, crcs
        self._buf = []
        f["commit_state"][:] = self._state_vector()
        self._sync()

    def finalize(self, expected_ids: Sequence[int] | None = None) -> None:
        """Commit, verify (all done, finite unit-norm rows, row counts, ids == ``expected_ids``) and rename the
        partial onto ``path``. On a failed check raise ``CacheError``; bad rows also discard the partial."""
        self.commit()
        if self.pending:
            self.close()
            raise CacheError(f"{self.path}: {len(self.pending)} images not done, first: image {self.pending[0]}")
        problems = _problems(self._h5, expected_ids)
        if problems:
            self.close()
            if not any(p.startswith("image_ids differ") for p in problems):
                self.partial_path.unlink(missing_ok=True)  # the committed rows themselves are bad: do not resume them
            raise CacheError(f"shard {self.path}: " + "; ".join(problems))
        self._sync()
        self._h5.close()
        self._h5 = None
        staged = self.path.with_name(self.path.name + ".final")
        _repack(self.partial_path, staged, self.compression)
        if self._fsync:
            _fsync(staged)
        os.replace(staged, self.path)
        self.partial_path.unlink()
        if self._fsync:
            _fsync(self.path.parent)
        log.info("%s: %d images, %d rows, %d skipped", self.path, len(self.image_ids), self.rows, len(self._skipped))

    def close(self) -> None:
        """Close without committing (buffered images are lost; the partial keeps the last commit)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._h5 is not None:
                self.commit()
        except Exception:
            if exc_type is None:
                raise
            log.exception("%s: commit on exit failed", self.partial_path)
        finally:
            self.close()


def _memmap(path: Path, d: h5py.Dataset) -> Any:
    """A read-only ``np.memmap`` of a contiguous, uncompressed dataset (microsecond slicing); else the dataset."""
    offset = d.id.get_offset()
    if offset is None or d.chunks is not None or d.compression is not None or d.size == 0:
        return d
    return np.memmap(path, dtype=d.dtype, mode="r", offset=offset, shape=d.shape)


def _float32(rows: Any) -> np.ndarray:
    """A float32 copy; torch's vectorised half -> float conversion is about 7x numpy's."""
    return torch.from_numpy(np.array(rows)).float().numpy()


def _repack(src: Path, dst: Path, compression: str | None = None) -> None:
    """Copy a verified partial into a compact final file: every dataset contiguous and exactly sized (no
    half-empty chunks on disk), so that readers can memory-map the row datasets. With ``compression="gzip"``
    the row datasets are byte-shuffled and gzip-compressed in chunks of ``COMPRESSED_CHUNK`` rows instead
    (smaller on disk, slower random reads)."""
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        fout.attrs.update(fin.attrs)
        for name, d in fin.items():
            packed = {}
            if compression and name in _ROW_NAMES and d.shape[0] > 0:
                chunks = (min(COMPRESSED_CHUNK, d.shape[0]), *d.shape[1:])
                packed = {"chunks": chunks, "compression": "gzip", "compression_opts": 1, "shuffle": True}
            out = fout.create_dataset(name, shape=d.shape, dtype=d.dtype, **packed)
            for lo in range(0, d.shape[0], _BLOCK):
                out[lo : lo + _BLOCK] = d[lo : lo + _BLOCK]
            out.attrs.update(d.attrs)


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
