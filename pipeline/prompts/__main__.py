"""``python -m pipeline.prompts``: the prompts stage's command line (:func:`pipeline.prompts.main`)."""

from __future__ import annotations

from pipeline.core import cli
from pipeline.prompts import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
