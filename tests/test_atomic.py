"""Atomic outputs: permissions under the umask, and JSON that never holds NaN."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline.core import atomic
from pipeline.formats import feature_cache as cache
from pipeline.formats import proposal_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_outputs_get_the_mode_a_plain_open_gives(tmp_path, umask):
    """Every way a stage writes a result (JSON, bytes through atomic_path, an HDF5 proposals file, a finalized OAKE
    shard) gives the file 0o666 & ~umask, the mode of a plain open(), not mkstemp's 0600."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = 0o666 & ~umask
    assert _mode(plain) == expected
    atomic.write_json(tmp_path / "a.json", {"a": 1})
    with atomic.atomic_path(tmp_path / "final.pth", suffix=".pth") as tmp:
        tmp.write_bytes(b"weights")
    proposal_file.write(tmp_path / "p.h5", [1], [np.zeros((1, 4))], [np.ones(1)])
    with cache.ShardWriter(tmp_path / "shard-000.h5", [1], "globals", 2, {"x": 1}) as writer:
        writer.add(1, np.array([[1.0, 0.0]]))
        writer.finalize([1])
    for name in ("a.json", "final.pth", "p.h5", "shard-000.h5"):
        assert _mode(tmp_path / name) == expected, (name, oct(_mode(tmp_path / name)), oct(expected))
    # an existing file keeps being replaced with the default mode
    (tmp_path / "a.json").chmod(0o600)
    atomic.write_json(tmp_path / "a.json", {"a": 2})
    assert _mode(tmp_path / "a.json") == expected
    assert atomic.new_file_mode() == expected and atomic.current_umask() == umask
    assert os.umask(umask) == umask  # reading it left it as it was


def test_write_json_refuses_nan_naming_the_file(tmp_path):
    out = tmp_path / "metrics.json"
    atomic.write_json(out, {"ap": 1.0})
    for bad in ({"ap": float("nan")}, [float("inf")]):
        with pytest.raises(ValueError, match=r"metrics\.json: cannot write as JSON .*None"):
            atomic.write_json(out, bad)
        with pytest.raises(ValueError, match=r"metrics\.json"):
            atomic.write_json(out, bad, compact=False)
    assert json.loads(out.read_text()) == {"ap": 1.0}  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left behind
    atomic.write_json(out, {"ap": None})
    assert json.loads(out.read_text()) == {"ap": None}
