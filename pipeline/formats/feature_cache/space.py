"""Disk space for a feature-cache shard: checked before the writer writes, and named when a write fails.

At its peak a shard occupies its partial file and the final copy that ``finalize`` repacks it into, each about
:func:`~pipeline.formats.feature_cache.layout.data_nbytes` bytes plus HDF5's headers. The writer checks the free
space of the shard's folder against what it is about to write (the whole shard when the caller knows its row count,
each commit, the final copy) and keeps ``HEADROOM`` bytes free beyond it for HDF5's own metadata, so that a full
disk stops the job with an error naming the shard and the free space instead of failing inside HDF5.

A write that fails inside HDF5 all the same (another process filled the disk, a quota, an I/O error) leaves HDF5's
state of that file broken: closing it fails ("slist already enabled?") and HDF5's own clean-up when the process
exits would crash on it (SIGSEGV, after the error was logged). :func:`skip_hdf5_exit_cleanup` ends such a process
right after Python's own clean-up instead, with the status of a failed stage.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
from pathlib import Path

import h5py

from pipeline.formats.feature_cache.layout import CacheError

#: bytes kept free beyond a write: HDF5's metadata and chunk-cache flushes, the file's close
HEADROOM = 16 << 20


class DiskSpaceError(CacheError):
    """The shard's folder has too little free space, or a write to the shard failed (disk full, quota, I/O)."""


def free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer in ``folder`` (``shutil.disk_usage``)."""
    return shutil.disk_usage(folder).free


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if abs(n) < 2**30 else f"{n / 2**30:.2f} GiB"


def require(shard: Path, needed: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless the folder of ``shard`` has ``needed + HEADROOM`` bytes free; the
    message names the shard, ``what`` needs the space, the folder and its free space."""
    folder = shard.parent
    free = free_bytes(folder)
    if free < needed + HEADROOM:
        raise DiskSpaceError(
            f"shard {shard}: not enough free disk space for {what}: {_size(free)} free in {folder}, about "
            f"{_size(needed + HEADROOM)} needed ({_size(needed)} + {_size(HEADROOM)} headroom)"
        )


def write_failed(shard: Path, exc: BaseException) -> DiskSpaceError:
    """The error for a failed write to ``shard`` (to raise ``from exc``): names the shard, the cause and the free
    space of its folder."""
    try:
        free = f"{_size(free_bytes(shard.parent))} free in {shard.parent}"
    except OSError as err:
        free = f"free space of {shard.parent} unknown ({err})"
    return DiskSpaceError(f"shard {shard}: writing failed ({type(exc).__name__}: {exc}); {free}")


def open_in_hdf5(path: Path) -> bool:
    """Whether HDF5 still holds ``path`` open (a file it failed to close)."""
    names = (fid.name for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))
    return any(os.fsdecode(name) == str(path) for name in names)


#: the exit status of a process that skips HDF5's clean-up: a stage's failure on bad input (pipeline.core.cli)
FAILED_STATUS = 2
_skipping = False


def skip_hdf5_exit_cleanup() -> None:
    """End the process at exit with :data:`FAILED_STATUS`, after the logs are flushed and before HDF5's C-level
    clean-up, which would crash on a file it could not close (the exit handlers registered later than this one run
    first; those registered earlier, not at all). Called once a file could not be closed after a failed write;
    idempotent."""
    global _skipping
    if not _skipping:
        _skipping = True
        atexit.register(_exit_now)


def _exit_now() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(FAILED_STATUS)
