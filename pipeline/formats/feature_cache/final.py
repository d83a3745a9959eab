"""The final copy of a verified partial shard (:mod:`.writer` writes the partial; layout: :mod:`.layout`)."""

from __future__ import annotations

from pathlib import Path

import h5py

from pipeline.formats.feature_cache.layout import _BLOCK, _ROW_NAMES, COMPRESSED_CHUNK


def repack(src: Path, dst: Path, compression: str | None = None) -> None:
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
