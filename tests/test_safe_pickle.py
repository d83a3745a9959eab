"""pipeline.core.safe_pickle: the restricted unpickler and the TorchScript weights reader run nothing they read."""

from __future__ import annotations

import builtins
import os
import pickle
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.core.safe_pickle import (
    Placeholder,
    UnsafePickleError,
    restricted_loads,
    torch_tensor_globals,
    torchscript_state_dict,
)


class _Call:
    """Pickles as a call of ``fn(*args)``: what a crafted pickle runs on load."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def payloads(marker: Path) -> dict[str, _Call]:
    return {
        "os.system": _Call(os.system, f"touch {marker}"),
        "builtins.eval": _Call(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "open": _Call(open, str(marker), "w"),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "open"])
def test_restricted_loads_refuses_every_unlisted_global(tmp_path, payload):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"w": [1.0, 2.0], "x": payloads(marker)[payload]}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refers to \S+\.(system|eval|open); tensors only \(nothing"):
        restricted_loads(data, torch_tensor_globals(), "tensors only")
    assert not marker.exists()


def test_placeholders_record_state_without_importing_anything():
    # GLOBAL '__torch__.evil Net', NEWOBJ(), BUILD({'a': 1}); module __torch__.evil does not exist
    data = b"\x80\x02c__torch__.evil\nNet\nq\x00)\x81}q\x01X\x01\x00\x00\x00aK\x01sb."
    obj = restricted_loads(data, {}, "nothing", placeholder_module="__torch__")
    assert isinstance(obj, Placeholder) and obj.qualname == "__torch__.evil.Net" and obj.state == {"a": 1}
    assert "__torch__.evil" not in sys.modules
    with pytest.raises(UnsafePickleError, match=r"refers to __torch__\.evil\.Net; nothing"):
        restricted_loads(data, {}, "nothing")


class _Leaf(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 3)
        self.nobias = torch.nn.Linear(3, 3, bias=False)
        self.register_buffer("buf", torch.arange(6.0))
        self.register_buffer("scratch", torch.ones(2), persistent=False)
        self.fp16 = torch.nn.Parameter(torch.randn(2, 2).half())
        self.count = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nobias(self.lin(x)) + self.buf[:3] + self.fp16.float().sum()


class _Root(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.leaf = _Leaf()
        self.seq = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.LayerNorm(3))
        self.register_buffer("view", self.leaf.buf[2:5])  # shares the leaf's storage at an offset
        self.register_buffer("ids", torch.arange(4).reshape(2, 2).t())  # int64, non-contiguous
        self.plain = torch.randn(2)  # a tensor attribute, neither parameter nor buffer
        self.again = self.leaf.lin  # one module under two names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(self.leaf(x)) + self.view + self.plain.sum()


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_state_dict_is_what_torch_jit_load_gives(tmp_path, how):
    torch.manual_seed(0)
    module = _Root()
    jit = torch.jit.script(module) if how == "script" else torch.jit.trace(module, torch.randn(1, 2))
    path = tmp_path / "net.pt"
    jit.save(str(path))
    reference = torch.jit.load(str(path)).state_dict()
    got = torchscript_state_dict(path)
    assert list(got) == list(reference)  # same keys, same order
    for key, value in reference.items():
        assert torch.equal(got[key], value) and got[key].dtype == value.dtype, key
        assert got[key].stride() == value.stride() and not got[key].requires_grad, key
    assert "plain" not in got and got["leaf.fp16"].dtype == torch.float16


class _RunsOnLoad(torch.nn.Module):
    """Its TorchScript ``__setstate__`` creates the file at ``marker`` when ``torch.jit.load`` restores it."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.w, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        touched = torch.from_file(state[1], True, 4, dtype=torch.uint8)
        self.w = state[0] + touched[:2].float() * 0.0
        self.marker = state[1]
        self.training = state[2]


def save_runs_on_load(path: Path, marker: Path, nested: bool = False) -> None:
    module = _RunsOnLoad(str(marker))
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2), module) if nested else module).save(str(path))


def save_with_global(path: Path, payload: _Call) -> None:
    """A clean TorchScript archive whose ``data.pkl`` is replaced by a pickle that calls ``payload``."""
    clean = path.with_name("clean.pt")
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(clean))
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(payload, protocol=2)
            dst.writestr(info.filename.replace("clean/", f"{path.stem}/"), data)


@pytest.mark.parametrize("nested", [False, True])
def test_torchscript_setstate_is_refused_and_not_run(tmp_path, nested):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    save_runs_on_load(path, marker, nested)
    with pytest.raises(UnsafePickleError, match=r"__torch__\.\S*_RunsOnLoad defines __setstate__"):
        torchscript_state_dict(path)
    assert not marker.exists()
    torch.jit.load(str(path))  # the archive is a real threat: torch runs its code
    assert marker.exists()


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "open"])
def test_torchscript_archive_with_a_foreign_global_is_refused(tmp_path, payload):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    save_with_global(path, payloads(marker)[payload])
    with pytest.raises(UnsafePickleError, match=r"refers to \S+\.(system|eval|open);"):
        torchscript_state_dict(path)
    assert not marker.exists()
