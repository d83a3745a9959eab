"""Atomic outputs: every file is written to a temporary sibling and renamed into place.

A kill at any moment leaves either the previous file or the complete new one, never half a file. The file gets
the permissions a plain ``open()`` would give it under the process umask (``0o666 & ~umask``), not the 0600 of
``tempfile.mkstemp``: colleagues sharing a results folder can read it when the umask lets them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS reports it (Linux: ``/proc/self/status``);
    elsewhere set and restored at once under a lock."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def give_default_mode(path: str | os.PathLike) -> None:
    """Set ``path``'s permission bits to those of a newly opened file (for files made by ``mkstemp``)."""
    os.chmod(path, new_file_mode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success give it the default mode (:func:`new_file_mode`),
    fsync it and ``os.replace`` it onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        give_default_mode(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any, compact: bool = True) -> None:
    """Write ``obj`` as JSON atomically; compact = no spaces (the reference's dump format).

    Raises:
        ValueError: ``obj`` is not valid JSON, e.g. it holds a NaN or an infinity (an undefined number must be
            ``None``); the message names ``path``, which is left untouched.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        try:
            if compact:
                json.dump(obj, fh, separators=(",", ":"), allow_nan=False)
            else:
                json.dump(obj, fh, indent=2, allow_nan=False)
                fh.write("\n")
        except ValueError as exc:
            raise ValueError(f"{path}: cannot write as JSON ({exc}; an undefined number must be None)") from exc


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
