"""Stage command lines: exit statuses, and the log file receives the traceback whatever the exception."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.core import cli

REPO = Path(__file__).resolve().parents[1]


def _stage(log: Path, exc: BaseException):
    def main(argv):
        cli.setup_logging(log)
        raise exc

    return main


def test_a_value_error_is_one_line_on_stderr_and_its_traceback_in_the_log(tmp_path, capsys):
    log = tmp_path / "logs/stage.log"
    assert cli.run_main(_stage(log, ValueError("a.json: no 'images' key"))) == 2
    err = capsys.readouterr().err
    assert "a.json: no 'images' key" in err and "Traceback" not in err
    text = log.read_text()
    assert "a.json: no 'images' key" in text and "Traceback (most recent call last)" in text


def test_any_other_exception_is_logged_with_its_traceback_and_exits_1(tmp_path, capsys):
    log = tmp_path / "stage.log"
    assert cli.run_main(_stage(log, AssertionError("failed to load image: x.jpg"))) == 1
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "AssertionError: failed to load image: x.jpg" in text
    assert "AssertionError: failed to load image: x.jpg" in capsys.readouterr().err


def test_a_system_exit_with_a_message_reaches_the_log(tmp_path):
    log = tmp_path / "stage.log"
    assert cli.run_main(_stage(log, SystemExit("predict --ensemble: no object head"))) == 1
    assert "predict --ensemble: no object head" in log.read_text()
    with pytest.raises(SystemExit) as info:  # argparse's exit status passes through
        cli.run_main(_stage(log, SystemExit(2)))
    assert info.value.code == 2


def test_every_stage_module_exits_through_run_main():
    """Each ``python -m pipeline...`` entry point ends in ``raise SystemExit(cli.run_main(main))``."""
    entry_points = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
                entry_points.append(path.relative_to(REPO))
                body = ast.unparse(node)
                assert "SystemExit(cli.run_main(" in body, f"{path.relative_to(REPO)}: {body}"
    assert Path("pipeline/proposals/__main__.py") in entry_points and len(entry_points) >= 10
