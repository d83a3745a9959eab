"""``python -m pipeline.teacher``: the teacher's command line (:func:`pipeline.teacher.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.teacher import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
