"""Writing a feature-cache shard (layout: :mod:`pipeline.formats.feature_cache.layout`).

Crash safety: a writer only touches ``<path>.partial`` (and ``<path>.final`` while repacking it). ``add`` buffers
rows in memory; ``commit`` appends them and syncs (flush + fsync), then sets ``done``/``offsets``/``skipped`` and
syncs, then writes ``commit_state`` and syncs. ``commit_state`` is the single source of truth: on reopen, rows past
its row count are cut off and the committed prefix is checked against its checksums; any failure (unreadable file,
torn metadata, checksum mismatch) restarts.

The partial has chunked, resizable row datasets. ``finalize`` verifies it and repacks it into the final shard: every
dataset contiguous and exactly sized, so readers memory-map the rows (or, with ``compression="gzip"``, the row
datasets shuffled + gzip-1 in chunks of ``COMPRESSED_CHUNK`` rows: ~13% smaller, slower reads).

Disk space (:mod:`.space`) is checked before the whole shard (given ``expected_rows``), each commit and the final
copy; a write that fails all the same raises :class:`~.space.DiskSpaceError` naming the shard and the free space,
and the writer then only closes the file (a rerun with space resumes from the last commit, or starts the shard
again if HDF5 left the partial unreadable).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.formats.feature_cache import space
from pipeline.formats.feature_cache.final import repack
from pipeline.formats.feature_cache.layout import (
    _BLOCK,
    COMPRESSIONS,
    FORMAT_VERSION,
    KINDS,
    STATE_FIELDS,
    STORAGES,
    CacheError,
    _crc,
    _meta_crc,
    _normalise_attrs,
    _py,
    _row_datasets,
    _skipped_json,
    data_nbytes,
)
from pipeline.formats.feature_cache.verify import _problems

log = logging.getLogger(__name__)


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


class ShardWriter:
    """Writes one shard through ``<path>.partial``, resumable after a crash; see the module docstring.

    ``add``/``skip`` must be called for the ids of ``pending`` in ascending order. ``commit_every`` images trigger an
    automatic ``commit``. ``fsync=False`` skips the fsyncs (survives a killed process, not a power cut).
    ``expected_rows``: the shard's row count if the caller knows it (globals: one per image; objects: the kept
    proposals): the free space is then checked for the whole shard before anything is written.
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
        expected_rows: int | None = None,
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
        self._failed = False  # a write failed: write nothing more, only close
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # before the partial is touched (a resume on a full disk would fail to write and start the shard again):
        # the headroom, and given expected_rows the whole shard, whose partial grows to about the final size and
        # whose final copy is then written beside it
        needed, what = 0, "opening the shard"
        if expected_rows is not None:
            total = data_nbytes(kind, storage, self.dim, len(self.image_ids), int(expected_rows))
            held = self.partial_path.stat().st_size if self.partial_path.exists() else 0
            needed, what = max(0, 2 * total - held), f"{expected_rows} rows and their final copy"
        space.require(self.path, needed, what)
        reason = self._try_resume() if self.partial_path.exists() else None
        if self._h5 is None:
            if reason:
                log.warning("%s: discarding partial shard and starting fresh: %s", self.partial_path, reason)
            self._written(self._create)
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

    def _written(self, write, *args) -> Any:
        """``write(*args)``; a failed write (h5py raises ``OSError`` or ``RuntimeError``: disk full, quota, I/O) marks
        the writer failed, closes the file and becomes a :class:`~.space.DiskSpaceError` naming the shard and the
        free space."""
        try:
            return write(*args)
        except (OSError, RuntimeError) as exc:  # h5py raises either for a failed write or flush
            self._failed = True
            self.close()
            raise space.write_failed(self.partial_path, exc) from exc

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
        """Make every image added so far durable (rows, then done/offsets/skipped, then commit_state; sync each).
        Checks the free space for the rows first (:func:`.space.require`)."""
        if self._h5 is None:
            raise CacheError(f"{self.partial_path}: writer is closed")
        if not self._buf:
            return
        rows = sum(arr.nbytes for _, rows, _ in self._buf if rows is not None for arr in rows.values())
        space.require(self.partial_path, rows, f"a commit of {len(self._buf)} images")
        self._written(self._commit)

    def _commit(self) -> None:
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
        self._written(self._sync)
        self._h5.close()
        self._h5 = None
        staged = self.path.with_name(self.path.name + ".final")
        final = data_nbytes(self.kind, self.storage, self.dim, len(self.image_ids), self.rows)
        space.require(staged, final, "the final copy")
        try:
            repack(self.partial_path, staged, self.compression)
            if self._fsync:
                _fsync(staged)
        except (OSError, RuntimeError) as exc:
            if space.open_in_hdf5(staged):  # HDF5 could not close the copy it failed to write
                space.skip_hdf5_exit_cleanup()
            staged.unlink(missing_ok=True)  # the verified partial stays: a rerun with space repacks it again
            raise space.write_failed(staged, exc) from exc
        os.replace(staged, self.path)
        self.partial_path.unlink()
        if self._fsync:
            _fsync(self.path.parent)
        log.info("%s: %d images, %d rows, %d skipped", self.path, len(self.image_ids), self.rows, len(self._skipped))

    def close(self) -> None:
        """Close without committing (buffered images are lost; the partial keeps the last commit). After a failed
        write, an error of the close itself is logged, not raised (the write's error is the one to report)."""
        if self._h5 is None:
            return
        f, self._h5 = self._h5, None
        try:
            f.close()
        except (OSError, RuntimeError):
            if not self._failed:
                raise
            log.warning("%s: HDF5 cannot close the file after the failed write", self.partial_path, exc_info=True)
            space.skip_hdf5_exit_cleanup()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._h5 is not None and not self._failed and not isinstance(exc, space.DiskSpaceError):
                self.commit()
        except Exception:
            if exc_type is None:
                raise
            log.exception("%s: commit on exit failed", self.partial_path)
        finally:
            self.close()
