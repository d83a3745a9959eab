"""``python -m pipeline.detect`` (:func:`pipeline.detect.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.detect import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
