"""Whole-shard verification of a final (or about-to-be-final) feature-cache shard.

Checks the metadata (attrs, CSR index over ascending ids, ``done`` flags, row-dataset dtypes and shapes against
``offsets[-1]``), the per-image row counts (globals 1, skipped 0), that every row is finite and unit-norm (within
``NORM_TOL``, int8 rows dequantised with their scale), the CRC32s recorded in ``commit_state`` and, optionally, the
image ids against an expected set. Rows are scanned ``_BLOCK`` at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from pipeline.formats.feature_cache.layout import _BLOCK, NORM_TOL, STATE_FIELDS, _crc, _py, _row_datasets


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
