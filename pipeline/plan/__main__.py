"""``python -m pipeline.plan``: run the stage (:func:`pipeline.plan.main`) and exit with its status (0 success,
2 bad input, 1 any other failure)."""

from pipeline.core import cli
from pipeline.plan import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
