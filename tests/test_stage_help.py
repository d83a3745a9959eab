"""``python -m pipeline.<stage> --help`` answers without importing the heavy libraries.

Each stage (and each subcommand of a stage with subcommands) prints its help in a fresh interpreter; the test then
looks at ``sys.modules``: torch, mmdet and open_clip must not have been imported (they take seconds to import, and
a stage imports them inside ``run``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mmdet", "open_clip")
STAGES = (
    "annotations",
    "demo_data",
    "detect",
    "evaluate",
    "export_instructcv",
    "oake.blocks",
    "oake.globals",
    "oake.objects",
    "oake.verify",
    "plan",
    "prompts",
    "proposals",
    "released",
    "report",
    "teacher",
    "train",
)
# runs the module as `python -m` does, then reports its exit code, what it printed and the heavy modules it imported
PROBE = """
import contextlib, io, json, runpy, sys
module, argv = sys.argv[1], sys.argv[2:]
sys.argv = [module, *argv]
out = io.StringIO()
code = None
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps({"code": code, "out": out.getvalue(), "heavy": heavy}))
"""


def help_of(module: str, *args: str) -> dict:
    """``{"code", "out", "heavy"}`` of ``python -m module *args --help`` in a fresh interpreter."""
    probe = f"HEAVY = {HEAVY!r}\n{PROBE}"
    proc = subprocess.run(
        [sys.executable, "-c", probe, module, *args, "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def subcommands(usage: str) -> list[str]:
    """The subcommands a stage's usage line lists as ``{a,b,c} ...`` (an option's choices have no ``...``; none: a
    stage without subcommands)."""
    first = usage.split("\n\n", 1)[0]
    found = re.search(r"(?:^|\s)\{([\w,-]+)\}\s+\.\.\.", first)
    return found.group(1).split(",") if found else []


def test_subcommands_are_read_from_the_usage_line():
    assert subcommands("usage: x [-h] [--log LOG]\n   {vild,ml,sample-exemplars}\n   ...\n\nmore {a,b} ...") == [
        "vild",
        "ml",
        "sample-exemplars",
    ]
    assert subcommands("usage: x [-h] [--on-bad-image {error,skip}] --output OUTPUT\n\n{a,b} ...") == []


@pytest.mark.parametrize("stage", STAGES)
def test_help_imports_no_heavy_library(stage):
    module = f"pipeline.{stage}"
    top = help_of(module)
    assert top["code"] in (0, None) and "usage:" in top["out"], top
    assert top["heavy"] == [], f"python -m {module} --help imported {top['heavy']}"
    for sub in subcommands(top["out"]):
        result = help_of(module, sub)
        assert result["code"] in (0, None) and "usage:" in result["out"], (sub, result)
        assert result["heavy"] == [], f"python -m {module} {sub} --help imported {result['heavy']}"
