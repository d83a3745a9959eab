"""On-disk layout of a feature-cache shard: one HDF5 file per (kind, split, shard index), rows in CSR order over images.

Datasets of a final shard (N images, M rows, D embedding dims):

- ``image_ids`` int64 [N], strictly ascending; ``done`` uint8 [N], 1 for every image of a final shard;
- ``offsets`` int64 [N+1], CSR index: the rows of image k are ``offsets[k]:offsets[k+1]``, ``offsets[0] == 0``;
- ``embeddings`` float16 [M, D] (storage ``"float16"``) or int8 [M, D] plus ``scales`` float32 [M] (storage
  ``"int8"``, row = int8 * scale); unit-norm rows up to ``NORM_TOL``;
- ``boxes`` float32 [M, 4] xyxy pixels (kinds ``blocks`` and ``objects``), ``objectness`` float16 [M] (``objects``);
- ``commit_state`` int64 [7], fields ``STATE_FIELDS`` (also stored comma-joined in its ``fields`` attr): committed
  row count, done image count, CRC32 of each row dataset (0 when absent) and of offsets + skipped JSON.

File attrs: the caller's attrs (str/int/float/bool, none named in ``RESERVED_ATTRS``) plus ``kind``, ``dim``,
``storage``, ``format_version`` and ``skipped`` (JSON list of ``{"image_id", "reason"}``, sorted keys). Globals have
one row per image that is not skipped; a skipped image has zero rows.

This module holds the constants, the row-dataset specs, the assignment of image ids to shards, attr normalisation
and the checksum helpers that the writer, the reader and the verifier share.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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


def data_nbytes(kind: str, storage: str, dim: int, images: int, rows: int) -> int:
    """Bytes of the datasets of a final uncompressed shard of ``images`` images and ``rows`` rows: the row datasets
    (:func:`_row_datasets`), ``image_ids``, ``offsets``, ``done`` and ``commit_state``. HDF5's headers and the attrs
    come on top (a few KiB per file)."""
    specs = _row_datasets(kind, storage, dim).values()
    per_row = sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in specs)
    return rows * per_row + images * (8 + 1) + (images + 1) * 8 + len(STATE_FIELDS) * 8


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
