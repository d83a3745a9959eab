"""``python -m pipeline.proposals`` (:func:`pipeline.proposals.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.proposals import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
