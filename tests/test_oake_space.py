"""A feature-cache shard on a full disk: the free space is checked before writing, a failed write becomes an error
naming the shard and the free space, the partial keeps its last commit and a rerun with space finishes the shard
byte-equal to an uninterrupted one; the extractor fails cleanly (exit 2, an ERROR line, no crash inside HDF5)."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from pipeline.formats import feature_cache as cache
from pipeline.formats.feature_cache import ShardWriter, space, writer
from pipeline.formats.feature_cache.layout import data_nbytes
from tests.test_oake_cache import ATTRS, DIM, IDS, assert_same_shard, only_final, rows_for, write_shard
from tests.test_oake_extract import argv, demo  # noqa: F401 (the demo fixture)

REPO = Path(__file__).resolve().parents[1]
Usage = namedtuple("Usage", "total used free")


def free_space(monkeypatch, free: int) -> None:
    """Every free-space query of the writer sees ``free`` bytes."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * free + 1, 9 * free + 1, free))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "reference.h5"
    write_shard(path)
    return path


def test_a_shard_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    rows = 10_000_000  # 10 M objects rows of 32 float16 dims + box + objectness: 1000 MB; twice with the final copy
    total = data_nbytes("objects", "float16", DIM, len(IDS), rows)
    assert total == rows * (DIM * 2 + 16 + 2) + len(IDS) * 17 + 8 + 7 * 8
    free_space(monkeypatch, total + space.HEADROOM)  # room for the partial, not for the final copy beside it
    path = tmp_path / "shard-000.h5"
    with pytest.raises(space.DiskSpaceError) as err:
        ShardWriter(path, IDS, "objects", DIM, ATTRS, expected_rows=rows)
    message = str(err.value)
    assert str(path) in message and "free" in message and f"{(total + space.HEADROOM) / 2**20:.1f} MiB free" in message
    assert not Path(f"{path}.partial").exists() and not path.exists()
    free_space(monkeypatch, 2 * total + space.HEADROOM)
    ShardWriter(path, IDS, "objects", DIM, ATTRS, expected_rows=rows).close()
    assert Path(f"{path}.partial").exists()


def test_a_partial_on_a_full_disk_is_left_as_it_is(tmp_path, monkeypatch, reference):
    path = tmp_path / "shard-000.h5"
    write_shard(path, stop_after=100)
    before = Path(f"{path}.partial").read_bytes()
    free_space(monkeypatch, space.HEADROOM - 1)
    with pytest.raises(space.DiskSpaceError, match=r"not enough free disk space for opening the shard"):
        write_shard(path)
    assert Path(f"{path}.partial").read_bytes() == before  # not resumed (resuming writes), not started again
    monkeypatch.undo()
    assert write_shard(path) == IDS[100:]
    assert_same_shard(path, reference)


def test_a_commit_without_room_stops_cleanly_and_a_rerun_with_space_completes(tmp_path, monkeypatch, reference):
    path = tmp_path / "shard-000.h5"
    write_shard(path, stop_after=100)  # 100 images committed (64 + the 36 committed when the block is left)
    # a commit of the next 64 images needs about 64 * 2 * (64 + 16 + 2) bytes: no room beyond the headroom
    free_space(monkeypatch, space.HEADROOM + 1000)
    with pytest.raises(space.DiskSpaceError, match=r"shard-000\.h5\.partial: not enough free disk space for a commit"):
        write_shard(path)
    monkeypatch.undo()
    assert write_shard(path) == IDS[100:]  # resumed from the last commit
    only_final(path)
    assert_same_shard(path, reference)


def test_a_failed_write_names_the_shard_and_the_free_space(tmp_path, monkeypatch, reference):
    path = tmp_path / "shard-000.h5"
    write_shard(path, stop_after=70)  # commits at 64 and 70
    calls = {"n": 0}
    real = writer._fsync

    def fsync(target):
        calls["n"] += 1
        if calls["n"] == 3:  # inside the first commit of the resumed run
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target)

    monkeypatch.setattr(writer, "_fsync", fsync)
    with ShardWriter(path, IDS, "objects", DIM, ATTRS) as w:
        with pytest.raises(space.DiskSpaceError) as err:
            for image_id in w.pending:
                rows = rows_for(image_id, "objects")
                w.skip(image_id, "bad") if rows is None else w.add(image_id, **rows)
        with pytest.raises(cache.CacheError, match="writer is closed"):
            w.add(IDS[-1], **rows_for(IDS[-1], "objects"))
    message = str(err.value)
    assert f"shard {path}.partial: writing failed" in message and "No space left on device" in message
    assert f"free in {tmp_path}" in message
    monkeypatch.undo()
    assert write_shard(path) == IDS[70:]
    assert_same_shard(path, reference)


def test_a_final_copy_without_room_keeps_the_verified_partial(tmp_path, monkeypatch, reference):
    path = tmp_path / "shard-000.h5"

    def repack(src, dst, compression=None):
        Path(dst).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "repack", repack)
    with pytest.raises(space.DiskSpaceError, match=r"shard-000\.h5\.final: writing failed"):
        write_shard(path)
    assert not path.exists() and not Path(f"{path}.final").exists() and Path(f"{path}.partial").exists()
    monkeypatch.undo()
    assert write_shard(path) == []  # every image was committed: only the final copy is made
    assert_same_shard(path, reference)


def test_an_extractor_on_a_full_disk_fails_before_decoding_and_names_the_shard(tmp_path, monkeypatch, demo):  # noqa: F811
    from pipeline.core import cli
    from pipeline.oake import globals as oake_globals

    out = tmp_path / "oake" / "shard-000.h5"
    free_space(monkeypatch, 5 << 20)
    assert cli.run_main(oake_globals.main, argv(demo, out)) == 2
    with pytest.raises(space.DiskSpaceError, match=rf"shard {out}: not enough free disk space for 5 rows"):
        oake_globals.main(argv(demo, out))
    assert not Path(f"{out}.partial").exists()


_FULL_DISK = """
import sys
from pipeline.core import cli
from pipeline.formats.feature_cache import space
from tests.test_oake_cache import write_shard
space.free_bytes = lambda folder: 1 << 40  # the checks pass: the file size limit makes the writes themselves fail
sys.exit(cli.run_main(lambda argv: write_shard(sys.argv[1], ids=range(1, 3001))))
"""


def test_writes_failing_inside_hdf5_end_in_an_error_line_not_a_crash(tmp_path):
    """A real failed write (RLIMIT_FSIZE: every write past 200 KiB fails with EFBIG, as ENOSPC would) in a fresh
    process: exit 2 with an ERROR line naming the shard, no SIGSEGV (HDF5's exit-time clean-up of the file it could
    not close crashed the process after the error); a rerun builds the shard byte-equal to an uninterrupted one
    (HDF5 may have written a superblock past the end it could write: the partial is then started again)."""
    path = tmp_path / "shard-000.h5"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 << 10, 200 << 10))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    error = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(error) == 1 and f"shard {path}.partial: writing failed" in error[0] and "free in" in proc.stderr
    ids = list(range(1, 3001))  # 3000 images, about 6000 rows: the partial outgrows 200 KiB after about 1000
    write_shard(path, ids=ids)  # without the limit
    write_shard(tmp_path / "uninterrupted.h5", ids=ids)
    assert_same_shard(path, tmp_path / "uninterrupted.h5")
