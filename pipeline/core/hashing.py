"""Content hashes of files (recorded in outputs so that a reader can tell which inputs made them)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of one file's bytes, read in 1 MiB chunks."""
    return sha256_files([path])


def sha256_files(paths: Iterable[str | Path]) -> str:
    """Hex sha256 of the bytes of several files, in sorted path order (one hash for a multi-file checkpoint)."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


_CACHE: dict[tuple, str] = {}


def sha256_files_cached(paths: Iterable[str | Path]) -> str:
    """:func:`sha256_files`, computed once per process for the same files (path, inode, size and mtime unchanged);
    for large inputs read by several loaders in one process (CLIP weights, ~350 MB)."""
    files = sorted(Path(p).resolve() for p in paths)
    key = tuple((str(p), st.st_ino, st.st_size, st.st_mtime_ns) for p, st in ((p, p.stat()) for p in files))
    if key not in _CACHE:
        _CACHE[key] = sha256_files(files)
    return _CACHE[key]
