"""Progress lines and CLIP provenance in a stage's own log: the helper's marks and figures, the stderr/terminal
split, non-propagating loggers (mmengine's) reaching the ``--log`` file, and stage runs with ``--log``."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest
import torch

from pipeline.core import cli, hashing, progress
from pipeline.core.progress import Progress, track

TINY = "OADP-Tiny-ViT-32"
OPEN_CLIP_NOTICE = "No pretrained weights loaded"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def root_logging():
    """The root logger's handlers, level and filters as they were before the test (stages set up logging)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, list(root.filters))
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.filters[:] = saved[0], saved[2]
    root.setLevel(saved[1])


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, progress.PROGRESS_ATTR, False)]


def test_a_line_at_every_tenth_and_one_at_the_end_with_rate_and_eta(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO)
    with Progress(100, "oake globals", unit="img", clock=clock, bar=False) as p:
        for _ in range(100):
            clock.now += 0.5  # 2 img/s
            p.update()
            if p.done == 40:
                p.set_postfix(loss="0.53")
    lines = _lines(caplog)
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 %, then the closing line
    # at 10 images: 5 s elapsed, 2 img/s, 90 left -> 45 s
    assert lines[0] == "oake globals: 10/100 img (10%), 2 img/s, elapsed 00:05, ETA 00:45"
    assert lines[4] == "oake globals: 50/100 img (50%), 2 img/s, elapsed 00:25, ETA 00:25, loss=0.53"
    assert lines[-1] == "oake globals: 100/100 img (100%), 2 img/s, elapsed 00:50, loss=0.53"


def test_slow_loops_log_every_30_seconds_and_open_ended_ones_without_eta(caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO)
    p = Progress(None, "teacher", unit="step", clock=clock, bar=False)
    for _ in range(7):
        clock.now += 10.0
        p.update()
    p.close()
    p.close()  # idempotent
    assert _lines(caplog) == [
        "teacher: 3 step, 0.1 step/s, elapsed 00:30",
        "teacher: 6 step, 0.1 step/s, elapsed 01:00",
        "teacher: 7 step, 0.1 step/s, elapsed 01:10",
    ]
    caplog.clear()
    clock2 = FakeClock()
    with Progress(1000, "big", clock=clock2, bar=False) as q:  # 31 s between two 10 % marks: a time line
        clock2.now += 31.0
        q.update(5)
    assert _lines(caplog)[0] == "big: 5/1000 it (0%), 0.161 it/s, elapsed 00:31, ETA 1:42:49"
    caplog.clear()
    clock3 = FakeClock()
    with Progress(2, "vild", unit="template", clock=clock3, bar=False) as r:  # each step over 30 s: the end once
        for _ in range(2):
            clock3.now += 35.0
            r.update()
    assert _lines(caplog) == [
        "vild: 1/2 template (50%), 0.0286 template/s, elapsed 00:35, ETA 00:35",
        "vild: 2/2 template (100%), 0.0286 template/s, elapsed 01:10",
    ]


def test_track_counts_the_items_of_a_sized_iterable(caplog):
    caplog.set_level(logging.INFO)
    assert list(track(range(4), "names", unit="class", bar=False)) == [0, 1, 2, 3]
    assert [line.split(",")[0] for line in _lines(caplog)] == [f"names: {i}/4 class ({25 * i}%)" for i in (1, 2, 3, 4)]


def test_progress_lines_reach_the_log_file_and_skip_stderr_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    log_file = tmp_path / "stage.log"
    for terminal in (False, True):
        monkeypatch.setattr(cli, "on_terminal", lambda terminal=terminal: terminal)
        cli.setup_logging(log_file)
        logging.getLogger("x").info("progress %s", terminal, extra={progress.PROGRESS_ATTR: True})
        logging.getLogger("x").info("plain %s", terminal)
        err = capsys.readouterr().err
        assert f"plain {terminal}" in err
        assert (f"progress {terminal}" in err) is not terminal
    text = log_file.read_text()
    assert all(f"{kind} {t}" in text for kind in ("progress", "plain") for t in (False, True))


def test_a_non_propagating_logger_reaches_the_log_file_inside_the_block_only(tmp_path):
    log_file = tmp_path / "train.log"
    cli.setup_logging(log_file)
    runner_logger = logging.getLogger("mmengine-like")
    runner_logger.propagate = False
    runner_logger.setLevel(logging.DEBUG)  # an MMLogger passes every level; its handlers choose
    with cli.also_to_log_file(runner_logger):
        runner_logger.info("Iter(train) [10/300]  lr: 1.0e-02  eta: 0:01:00  loss: 1.5")
        runner_logger.debug("Get class `AdamW` from registry")  # below the root's level (INFO)
    runner_logger.info("after the block")
    text = log_file.read_text()
    assert "Iter(train) [10/300]  lr: 1.0e-02  eta: 0:01:00  loss: 1.5" in text
    assert "after the block" not in text and "AdamW" not in text
    assert runner_logger.handlers == []


def test_weights_are_hashed_once_per_process_and_again_when_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    calls = []
    real = hashing.sha256_files
    monkeypatch.setattr(hashing, "sha256_files", lambda paths: calls.append(1) or real(paths))
    assert hashing.sha256_files_cached([path]) == hashlib.sha256(b"abc").hexdigest()
    assert hashing.sha256_files_cached([str(path)]) == hashlib.sha256(b"abc").hexdigest()
    assert len(calls) == 1
    path.write_bytes(b"abcd")  # another size
    assert hashing.sha256_files_cached([path]) == hashlib.sha256(b"abcd").hexdigest() and len(calls) == 2


def test_clip_loads_log_their_weights_and_not_open_clips_random_init_notice(tmp_path, caplog):
    from pipeline.models.clip import create_architecture, load_clip

    caplog.set_level(logging.INFO)
    load_clip(TINY, "random", seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(create_architecture(TINY, seed=1).state_dict(), path)
    loaded = load_clip(TINY, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.weights_hash == digest
    messages = [r.getMessage() for r in caplog.records]
    assert f"CLIP {TINY}: weights random (seed 3)" in messages
    assert f"CLIP {TINY}: weights {path} (sha256 {digest}, state-dict)" in messages
    assert not any(OPEN_CLIP_NOTICE in m for m in messages)
    assert not any("open_clip" in r.pathname for r in caplog.records)  # nor its INFO lines ("Loaded built-in ...")
    assert logging.getLogger().filters == []  # the notices are dropped inside the creation only
    caplog.clear()
    import open_clip

    open_clip.create_model(TINY, pretrained=None)  # outside the project's loader open_clip still says it
    assert any(OPEN_CLIP_NOTICE in r.getMessage() for r in caplog.records)
    assert f"Loaded built-in {TINY} model config." in [r.getMessage() for r in caplog.records]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from pipeline.models.clip import create_architecture

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(create_architecture(TINY, seed=0).state_dict(), path)
    return path


def _stage_log(log_file: Path, weights: Path) -> str:
    text = log_file.read_text()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert f"CLIP {TINY}: weights {weights} (sha256 {digest}" in text
    assert OPEN_CLIP_NOTICE not in text
    return text


def test_prompts_vild_logs_progress_and_weights_to_its_log(tmp_path, tiny_weights):
    from pipeline import prompts
    from tests.conftest import write_json

    names = write_json(
        tmp_path / "ann.json",
        {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate("abcde")]},
    )
    log_file = tmp_path / "logs/prompts/vild.log"
    prompts.main(
        ["--log", str(log_file), "vild", "--names-from", str(names), "--model", TINY, "--weights", str(tiny_weights)]
        + ["--device", "cpu", "--output", str(tmp_path / "vild.pth")]
    )
    text = _stage_log(log_file, tiny_weights)
    marks = re.findall(r"vild: 5 names x 74 templates: (\d+)/74 template", text)
    assert marks == ["8", "16", "24", "32", "40", "48", "56", "64", "72", "74"]


def test_oake_extract_logs_progress_and_weights_to_its_log(tmp_path, tiny_weights):
    from pipeline import demo_data
    from pipeline.oake import globals as oake_globals

    demo = tmp_path / "demo"
    demo_data.run(demo_data.DemoOptions(out_dir=demo, classes=("red circle", "blue square"), num_train=1, num_val=3))
    log_file = tmp_path / "globals.log"
    oake_globals.main(
        ["--annotations", str(demo / "annotations/instances_val.json"), "--images", str(demo / "images/val")]
        + ["--output", str(tmp_path / "g.h5"), "--model", TINY, "--weights", str(tiny_weights), "--device", "cpu"]
        + ["--workers", "0", "--batch-images", "1", "--log", str(log_file)]
    )
    text = _stage_log(log_file, tiny_weights)
    marks = re.findall(r"oake globals \S+/g\.h5: (\d)/3 img \(\d+%\)", text)
    assert marks == ["1", "2", "3"]
