"""Shared command-line plumbing for the stages: logging to stderr and to the rule's log file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    """Log to stderr and, when given, to ``log_file`` (appended; Snakemake's ``log:`` path)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def dispatch(parser: argparse.ArgumentParser, argv=None):
    """Parse ``argv`` for a stage with subcommands, set up logging, run the chosen subcommand's ``func``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the raw arguments, for stages that relaunch themselves (torchrun)
    setup_logging(args.log, args.verbose)
    return args.func(args)


def torchrun_command(module: str, gpus: int, argv) -> list[str]:
    """The command that reruns ``python -m module argv`` under ``torchrun``, one process per GPU."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
        module,
        *argv,
    ]


def relaunch_under_torchrun(module: str, gpus: int, argv) -> bool:
    """For ``gpus > 1`` outside torchrun: rerun the stage under torchrun and return True (the caller stops).

    Raises:
        ValueError: fewer CUDA devices are visible than asked for.
    """
    import os
    import subprocess

    import torch

    if gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    if torch.cuda.device_count() < gpus:
        raise ValueError(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")
    logging.getLogger(module).info("launching %d processes with torchrun", gpus)
    subprocess.run(torchrun_command(module, gpus, argv), check=True)
    return True


def run_main(main_fn, argv=None) -> int:
    """Run a stage's ``main``; a ``ValueError`` (bad input) becomes one clear line and exit status 2."""
    try:
        main_fn(argv)
    except ValueError as exc:
        logging.getLogger("pipeline").error("%s", exc)
        return 2
    return 0
