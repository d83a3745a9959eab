"""``python -m pipeline.report`` (:func:`pipeline.report.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.report import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
