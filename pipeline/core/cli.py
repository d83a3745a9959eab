"""Shared command-line plumbing for the stages: logging to stderr and to the rule's log file, exit statuses.

Every ``python -m pipeline.<stage>`` ends in ``raise SystemExit(run_main(main))``: a ``ValueError`` (bad input)
is one line on stderr and exit status 2; any other exception is logged with its traceback and gives exit status 1.
The ``--log`` file receives the traceback in both cases.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.progress import PROGRESS_ATTR, on_terminal


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _BriefFormatter(logging.Formatter):
    """Leaves out the traceback of records logged with ``extra={"brief": True}`` (stderr shows one line)."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "brief", False) and record.exc_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


def _not_progress(record: logging.LogRecord) -> bool:
    return not getattr(record, PROGRESS_ATTR, False)


def setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    """Log to stderr and, when given, to ``log_file`` (appended; Snakemake's ``log:`` path).

    Records logged with ``extra={"brief": True}`` carry their traceback to ``log_file`` only. Progress lines
    (:mod:`pipeline.core.progress`) skip stderr when it is a terminal: the bar shows them there."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_BriefFormatter(LOG_FORMAT))
    if on_terminal():
        stderr.addFilter(_not_progress)
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(file_handler)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True)


class _ToLogFiles(logging.Handler):
    """Hands records to the root logger's file handlers (the ``--log`` file); not a ``FileHandler`` itself, so
    mmengine writes no parameter-initialisation table through it."""

    def __init__(self, targets: list[logging.Handler]) -> None:
        super().__init__()
        self.targets = targets

    def emit(self, record: logging.LogRecord) -> None:
        for target in self.targets:
            target.handle(record)


@contextmanager
def also_to_log_file(logger: logging.Logger) -> Iterator[None]:
    """Inside the block, also write the records of ``logger`` to the ``--log`` file of :func:`setup_logging`: for a
    logger that does not propagate to the root, such as the ``MMLogger`` of an mmengine ``Runner`` (its iteration
    lines with loss, lr and ETA), at the root logger's level (mmengine's debug lines stay out unless ``-v``).
    Nothing changes when no log file is set up."""
    root = logging.getLogger()
    targets = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    handler = _ToLogFiles(targets)
    handler.setLevel(root.getEffectiveLevel())
    if targets:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


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


def check_gpus(gpus: int) -> None:
    """Raise ``ValueError`` when ``gpus > 1`` and fewer CUDA devices are visible."""
    import torch

    if gpus > 1 and torch.cuda.device_count() < gpus:
        raise ValueError(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")


def relaunch_under_torchrun(module: str, gpus: int, argv) -> bool:
    """For ``gpus > 1`` outside torchrun: rerun the stage under torchrun and return True (the caller stops).

    Raises:
        ValueError: fewer CUDA devices are visible than asked for.
    """
    import os
    import subprocess

    if gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    check_gpus(gpus)
    logging.getLogger(module).info("launching %d processes with torchrun", gpus)
    subprocess.run(torchrun_command(module, gpus, argv), check=True)
    return True


def run_main(main_fn, argv=None) -> int:
    """Run a stage's ``main`` and return its exit status.

    0: success. 2: a ``ValueError`` (bad input): one line on stderr, the traceback in the log file too.
    1: any other exception, logged with its traceback (stderr and log file). A ``SystemExit`` with a message is
    logged as an error and gives 1; one with a status (argparse) passes through.
    """
    try:
        main_fn(argv)
        return 0
    except ValueError as exc:
        _log_failure().error("%s", exc, exc_info=True, extra={"brief": True})
        return 2
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        _log_failure().error("%s", exc.code)
        return 1
    except Exception as exc:
        _log_failure().exception("failed: %s: %s", type(exc).__name__, exc)
        return 1


def _log_failure() -> logging.Logger:
    """The logger for a stage's failure; stderr logging is set up first if the stage failed before doing so."""
    if not logging.getLogger().handlers:
        setup_logging()
    return logging.getLogger("pipeline")
