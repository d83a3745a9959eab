"""Class names that collide: two names that differ only by case or spacing are one class to a reader and to CLIP's
lower-casing tokenizer, so every vocabulary refuses them, naming both (the custom dataset's check:
tests/test_custom_dataset.py and tests/test_workflow_custom.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import vocab

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["Red Circle", "blue square", "red  circle"], "'Red Circle' and 'red  circle' differ only by case or spacing"),
        (["dog", " DOG\t"], "'dog' and ' DOG\\t' differ only by case or spacing"),
        (["cat", "cat"], "class name 'cat' is repeated"),
    ],
)
def test_names_that_differ_only_by_case_or_spacing_are_refused(names, message):
    with pytest.raises(vocab.VocabError, match=r"^my\.json: ") as err:
        vocab.check_distinct(names, "my.json")
    assert message in str(err.value)
    vocab.check_distinct(["red circle", "red circles", "red-circle", "rouge cercle"], "my.json")  # distinct


def _detect(tmp_path: Path, *names_args: str) -> subprocess.CompletedProcess:
    """``python -m pipeline.detect`` (the checkpoint is never reached: the vocabulary is checked first)."""
    argv = [str(tmp_path / "final.pth"), str(tmp_path / "images"), *names_args, "--out-dir", str(tmp_path / "out")]
    return subprocess.run([sys.executable, "-m", "pipeline.detect", *argv], capture_output=True, text=True, cwd=REPO)


def test_the_detect_stage_refuses_a_vocabulary_of_names_differing_only_by_case(tmp_path):
    proc = _detect(tmp_path, "--vocabulary=Red Circle, blue square, red  circle")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--vocabulary: class names 'Red Circle' and 'red  circle' differ only by case or spacing" in proc.stderr
    names = tmp_path / "names.txt"
    names.write_text("# my classes\nRed Circle\nRED CIRCLE\n", encoding="utf-8")
    proc = _detect(tmp_path, "--vocabulary-file", str(names))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{names}: class names 'Red Circle' and 'RED CIRCLE' differ only by case or spacing" in proc.stderr
    assert not (tmp_path / "out").exists()
