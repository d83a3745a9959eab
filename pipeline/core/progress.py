"""Progress of a stage's long loops: a tqdm bar on a terminal and periodic lines in the stage's log.

:class:`Progress` counts units of work (images, steps, templates, seconds of a time budget) towards a total and
logs, through :mod:`logging` (so into the ``--log`` file that Snakemake points to), a line such as::

    oake globals val/shard-000.h5: 40/100 img (40%), 3.21 img/s, elapsed 00:12, ETA 00:19, loss=0.53

every ``fraction`` of the total (10 %) and whenever ``seconds`` (30) have passed since the last line, never per
item, and one closing line with the total time. The bar is drawn only when stderr is a terminal; there the stderr
handler of :func:`pipeline.core.cli.setup_logging` leaves the progress lines to the bar (the log file keeps them).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

PROGRESS_ATTR = "progress"  # set on every progress record (``extra={PROGRESS_ATTR: True}``)
T = TypeVar("T")


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal (bars are drawn there and only there)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Counts ``done`` towards ``total`` (``None``: open-ended) and reports as the module docstring says.

    Args:
        total: units of work, or ``None`` when unknown (lines then come every ``seconds`` only, without %/ETA).
        desc: what is being done; begins every line.
        unit: the unit's name (``img``, ``step``, ``template``).
        logger: where the lines go (default ``pipeline.progress``).
        fraction: a line each time ``done`` crosses another multiple of ``fraction * total``.
        seconds: a line when this long has passed since the last one.
        clock: monotonic seconds (tests pass a fake one).
        bar: draw a tqdm bar (``None``: when stderr is a terminal).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        logger: logging.Logger | None = None,
        fraction: float = 0.1,
        seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        bar: bool | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.log = logger or logging.getLogger("pipeline.progress")
        self.seconds, self.clock = seconds, clock
        self.step = max(1, math.ceil(total * fraction)) if total else None
        self.done, self.postfix = 0, {}
        self.start = self.last = clock()
        self._bucket, self._closed = 0, False
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=not (on_terminal() if bar is None else bar))

    def update(self, n: int = 1) -> None:
        """``n`` more units done; logs a line when a 10 % mark is crossed or ``seconds`` have passed."""
        self.done += n
        self._bar.update(n)
        now = self.clock()
        bucket = self.done // self.step if self.step else 0
        finished = self.total is not None and self.done >= self.total
        if not finished and (bucket > self._bucket or now - self.last >= self.seconds):  # close() logs the end
            self._line(now)
        self._bucket = bucket

    def set_postfix(self, **values) -> None:
        """Figures shown after the counts (a loss, a learning rate), formatted with ``str``."""
        self.postfix = {k: str(v) for k, v in values.items()}
        self._bar.set_postfix(self.postfix, refresh=False)

    def line(self, now: float | None = None) -> str:
        """The progress line as of ``now`` (default: the clock)."""
        elapsed = (self.clock() if now is None else now) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            parts = [f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"]
        else:
            parts = [f"{self.done} {self.unit}"]
        parts += [f"{rate:.3g} {self.unit}/s", f"elapsed {tqdm.format_interval(elapsed)}"]
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {tqdm.format_interval((self.total - self.done) / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return f"{self.desc}: " + ", ".join(parts)

    def _line(self, now: float) -> None:
        self.last = now
        self.log.info("%s", self.line(now), extra={PROGRESS_ATTR: True})

    def close(self) -> None:
        """Log the closing line (idempotent) and close the bar."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        self._line(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, *, total: int | None = None, **kwargs) -> Iterator[T]:
    """Yield ``items``, one unit of :class:`Progress` each (``total``: ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, **kwargs) as progress:
        for item in items:
            yield item
            progress.update()
