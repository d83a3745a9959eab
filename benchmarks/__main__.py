"""``python -m benchmarks [NAME ...]``: run benchmarks, each writing ``results/bench/<name>.json``."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from pipeline.core import atomic, cli

BENCHMARKS = ("annotations", "prompts", "oake", "train", "dag", "stages", "full_size")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("names", nargs="*", default=list(BENCHMARKS), help=f"benchmarks to run, from {BENCHMARKS}")
    p.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    p.add_argument("--scale", type=float, default=1.0, help="dataset size factor (1.0 = real size)")
    cli.add_log_argument(p)
    args = p.parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    for name in args.names:
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.run(scale=args.scale)
        atomic.write_json(args.out_dir / f"{name}.json", result, compact=False)
        logging.getLogger(__name__).info("%s: %s", name, result)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
