"""``python -m pipeline.released`` (:func:`pipeline.released.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.released import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
