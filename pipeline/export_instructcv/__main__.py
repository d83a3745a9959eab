"""``python -m pipeline.export_instructcv`` (:func:`pipeline.export_instructcv.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.export_instructcv import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
