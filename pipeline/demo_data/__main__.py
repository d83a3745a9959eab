"""``python -m pipeline.demo_data``: the generator's command line (:func:`pipeline.demo_data.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.demo_data import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
