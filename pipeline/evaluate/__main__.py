"""``python -m pipeline.evaluate``: run the stage (:func:`pipeline.evaluate.main`) and exit with its status
(0 success, 2 bad input, 1 any other failure)."""

from pipeline.core import cli
from pipeline.evaluate import main

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
