"""python -m pipeline.released prompt: the reference's ml_coco.pth (built here in its layout: names, embeddings,
scaler, bias) and vild.pth as this pipeline's prompt files, names checked against the dataset's vocabulary."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.core import vocab
from pipeline.formats import prompt_file
from pipeline.formats.prompt_file import PromptError
from pipeline.released import prompt
from tests.conftest import write_json

COCO = list(vocab.COCO_BASE + vocab.COCO_NOVEL)


def coco_vocabulary(tmp_path: Path, names=COCO) -> Path:
    cats = [{"id": k, "name": n} for k, n in enumerate(names)]
    return write_json(tmp_path / "instances_val2017.65.json", {"images": [], "annotations": [], "categories": cats})


def ml_coco(names=COCO, parameters: bool = False) -> dict:
    """The released ml_coco.pth's layout: 65 names, [65, 512] embeddings, learned scaler and bias."""
    g = torch.Generator().manual_seed(0)
    scaler, bias = torch.tensor(21.25), torch.tensor(4.5)
    if parameters:  # saved straight from the prompt learner's parameters
        scaler, bias = torch.nn.Parameter(scaler), torch.nn.Parameter(bias)
    return {
        "names": list(names),
        "embeddings": F.normalize(torch.randn(len(names), 512, generator=g)),
        "scaler": scaler,
        "bias": bias,
    }


def run(tmp_path: Path, obj=None, data: bytes | None = None, names_from: Path | None = None, kind: str = "ml"):
    src, out = tmp_path / f"{kind}_coco.pth", tmp_path / "prompts" / f"{kind}.pth"
    if data is None:
        torch.save(obj, src)
    else:
        src.write_bytes(data)
    vocab_file = names_from or coco_vocabulary(tmp_path)
    prompt.STAGE.main(
        ["prompt", "--input", str(src), "--names-from", str(vocab_file), "--kind", kind, "--output", str(out)]
    )
    return src, out


@pytest.mark.parametrize("parameters", [False, True])
def test_ml_coco_becomes_a_prompt_file_with_the_same_rows_scaler_and_bias(tmp_path, parameters):
    extra = [*COCO[::-1], "unicorn"]  # any order, names beyond the vocabulary kept
    obj = ml_coco(extra, parameters)
    src, out = run(tmp_path, obj)
    got = prompt_file.load(out)
    assert got["names"] == extra
    assert torch.equal(got["embeddings"], obj["embeddings"])
    assert got["scaler"] == 21.25 and got["bias"] == 4.5
    assert got["meta"]["origin"] == "released" and got["meta"]["source"] == str(src) and got["meta"]["kind"] == "ml"
    assert torch.equal(prompt_file.select(got, ["dog", "person"]), obj["embeddings"][[extra.index("dog"), 64]])


def test_a_vild_file_without_scaler_and_bias(tmp_path):
    obj = {"names": sorted(COCO), "embeddings": torch.randn(65, 512).half()}
    _, out = run(tmp_path, obj, kind="vild")
    got = prompt_file.load(out)
    assert "scaler" not in got and torch.equal(got["embeddings"], obj["embeddings"].float())


def test_a_class_missing_from_the_file_is_named(tmp_path):
    obj = ml_coco([n for n in COCO if n not in ("toothbrush", "sink")])
    with pytest.raises(
        PromptError, match=r"ml_coco\.pth: 2 class name\(s\) of .* are not in the file: \['sink', 'toothbrush'\]"
    ):
        run(tmp_path, obj)
    assert not (tmp_path / "prompts/ml.pth").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.pop("embeddings"), r"missing key 'embeddings'"),
        (lambda o: o.pop("bias"), r"missing key 'bias' \(scaler and bias go together\)"),
        (lambda o: o.update(templates=["a photo of a {}"]), r"unexpected key 'templates'"),
        (
            lambda o: o.update(embeddings=torch.randn(64, 512)),
            r"key 'embeddings' must be a float tensor \[65, D\], got \[64, 512\]",
        ),
        (lambda o: o.update(scaler=torch.ones(2)), r"key 'scaler' must be a number or a one-element float tensor"),
        (lambda o: o.update(names=COCO[:-1] + ["person"]), r"key 'names' repeats \['person'\]"),
    ],
)
def test_a_file_not_in_the_reference_layout_is_refused_naming_file_and_key(tmp_path, change, message):
    obj = ml_coco()
    change(obj)
    with pytest.raises(PromptError, match=r"ml_coco\.pth: " + message):
        run(tmp_path, obj)


class _Call:
    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("form", ["torch.save", "legacy torch.save", "plain pickle"])
def test_a_prompt_whose_pickle_would_run_code_is_refused_and_nothing_runs(tmp_path, form):
    marker = tmp_path / "pwned"
    obj = {**ml_coco(), "scaler": _Call(os.system, f"touch {marker}")}
    if form == "plain pickle":
        data = pickle.dumps(obj, protocol=2)
    else:
        src = tmp_path / "evil.pth"
        torch.save(obj, src, _use_new_zipfile_serialization=form == "torch.save")
        data = src.read_bytes()
    with pytest.raises(PromptError, match=r"ml_coco\.pth: refused, not a tensors-only file \(nothing was run\)"):
        run(tmp_path, data=data)
    assert not marker.exists() and not (tmp_path / "prompts/ml.pth").exists()
