"""In CI (``CI=true``) a skipped preset or SLURM test fails the run unless no GPU was the reason (tests/conftest.py).

A small suite in a temporary folder uses the hooks of ``tests/conftest.py`` and is run by pytest in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFTEST = "from tests.conftest import pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary\n"
PRESETS = """
import pytest

def test_runs():
    assert True

def test_without_a_gpu():
    pytest.skip("needs CUDA")
"""
NO_DATA = """
def test_without_data():
    pytest.skip("the category metadata is not beside the checkout")
"""
OTHER = """
import pytest

def test_elsewhere():
    pytest.skip("any reason")
"""


def run_suite(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_presets_e2e.py").write_text(PRESETS)
    (tmp_path / "test_other.py").write_text(OTHER)
    return tmp_path


def test_a_gpu_skip_and_skips_elsewhere_pass_in_ci(suite):
    proc = run_suite(suite, "true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "SKIPPED" in proc.stdout and "needs CUDA" in proc.stdout  # -rs lists the skips


def test_any_other_skip_of_a_preset_test_fails_a_ci_run_naming_it(suite):
    (suite / "test_presets_e2e.py").write_text(PRESETS + NO_DATA)
    proc = run_suite(suite, "true")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "skips that fail a CI run" in proc.stdout
    assert "test_presets_e2e.py::test_without_data: Skipped: the category metadata" in proc.stdout
    assert "test_without_a_gpu" not in proc.stdout.split("skips that fail a CI run")[1]
    assert run_suite(suite, None).returncode == 0  # outside CI a skip is a skip
    assert run_suite(suite, "false").returncode == 0
