"""Resumable training work dirs: checkpoints are resumed only by the run that made them.

A run is identified by its fingerprint (:func:`fingerprint`): the sha256 of the run's resolved config in which

* every string naming an existing file (annotation file, prompt files, OAKE shards, ``load_from``, a backbone's
  ``init_cfg`` checkpoint ...) and every declared input folder is replaced by the identity of its contents
  (:func:`content_id`), so the same inputs give the same fingerprint wherever the project folder lies, and a
  regenerated input, other initial weights or another option give another one;
* location-only values (``work_dir``) are left out.

Content identities:

* an OAKE feature shard (HDF5 with ``commit_state``): sha256 of its attrs, image ids, offsets, dataset shapes and
  commit state (row count and the CRC32 of every row dataset, which :mod:`pipeline.formats.feature_cache` writes
  with the rows and checks on verification): a few kilobytes read from a file that may hold gigabytes;
* any other file: sha256 of its bytes;
* a folder (the training images): sha256 of its listing, every file's relative path and size.

:func:`guard_work_dir` compares the fingerprint with the one recorded in the work dir: on a mismatch the
checkpoints there are moved to ``stale/<old fingerprint>/`` (not resumed, not deleted) and the log names the
config keys that differ; ``last_checkpoint`` of a moved or copied work dir is pointed at the checkpoint in the
work dir itself. :func:`initial_weights` then decides between resuming those checkpoints and starting from
``load_from``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.core import atomic
from pipeline.core.hashing import sha256_file

log = logging.getLogger(__name__)

LOCATION_KEYS = frozenset({"work_dir"})  # where a run writes, not what it computes
STAMP = "config.sha256"
MANIFEST = "fingerprint.json"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as JSON-serialisable Python."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def _shard_id(path: str | os.PathLike) -> str | None:
    """Identity of an OAKE shard from its metadata and row checksums; ``None`` when the file is not one."""
    import h5py

    with open(path, "rb") as fh:
        if fh.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
            return None
    with h5py.File(path, "r") as f:
        if "commit_state" not in f or "kind" not in f.attrs:
            return None
        h = hashlib.sha256(b"oake-shard\0")
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
        shapes = {name: [str(d.dtype), list(d.shape)] for name, d in f.items() if isinstance(d, h5py.Dataset)}
        h.update(json.dumps(shapes, sort_keys=True).encode())
        for name in ("image_ids", "offsets", "commit_state"):
            h.update(f[name][:].tobytes())
        return h.hexdigest()


def _folder_id(path: str | os.PathLike) -> str:
    h = hashlib.sha256(b"folder\0")
    root = Path(path)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            h.update(f"{file.relative_to(root).as_posix()}\0{file.stat().st_size}\n".encode())
    return h.hexdigest()


def content_id(path: str | os.PathLike) -> str:
    """The identity of a file's or folder's contents (see the module docstring), independent of its location."""
    if os.path.isdir(path):
        return "folder:" + _folder_id(path)
    shard = _shard_id(path)
    return "shard:" + shard if shard is not None else "sha256:" + sha256_file(path)


def identified_config(config: Mapping, dirs: Iterable[str | os.PathLike] = ()) -> dict:
    """``config`` as plain JSON data with every existing file named in it, and every folder of ``dirs`` (compared
    after resolving), replaced by ``{"content": content_id}``; ``LOCATION_KEYS`` dropped at every level."""
    folders = {Path(d).resolve() for d in dirs}
    ids: dict[str, str] = {}

    def ident(path: str) -> dict:
        if path not in ids:
            ids[path] = content_id(path)
        return {"content": ids[path]}

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {str(k): walk(v) for k, v in node.items() if k not in LOCATION_KEYS}
        if isinstance(node, list | tuple):
            return [walk(v) for v in node]
        if isinstance(node, str) and node:
            if os.path.isfile(node):
                return ident(node)
            if folders and os.path.isdir(node) and Path(node).resolve() in folders:
                return ident(node)
            return node
        if node is None or isinstance(node, bool | int | float):
            return node
        return str(node)

    return walk(getattr(config, "to_dict", lambda: config)())


def fingerprint(identified: Mapping) -> str:
    """sha256 of an :func:`identified_config`."""
    return hashlib.sha256(json.dumps(identified, sort_keys=True).encode()).hexdigest()


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if isinstance(v, Mapping) and "content" not in v:
                out.update(_leaves(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    return {prefix.rstrip("."): node}


def differences(old: Mapping, new: Mapping, limit: int = 8) -> list[str]:
    """Dotted keys whose values differ between two identified configs (a changed input file reads as its key)."""
    a, b = _leaves(old), _leaves(new)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))
    return keys[:limit] + ([f"... {len(keys) - limit} more"] if len(keys) > limit else [])


def _checkpoints(work_dir: Path) -> list[Path]:
    """Files a resume would read: mmengine's checkpoints and ``last_checkpoint`` (``final.pth`` is the output)."""
    return [p for p in work_dir.glob("*.pth") if p.name != "final.pth"] + list(work_dir.glob("last_checkpoint"))


def _relocate_last_checkpoint(work_dir: Path) -> None:
    """Point ``last_checkpoint`` (an absolute path written by mmengine) at the file of that name in ``work_dir``:
    after the project folder was moved or copied it names the old location."""
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        return
    recorded = Path(pointer.read_text().strip())
    here = (work_dir / recorded.name).resolve()
    if recorded.resolve() == here:
        return
    if here.is_file():
        log.info("%s: last checkpoint %s is now %s", work_dir, recorded, here)
        with atomic.atomic_path(pointer) as tmp:
            tmp.write_text(str(here))
    else:
        log.warning("%s: last_checkpoint names %s, which is not in the work dir: removed", work_dir, recorded)
        pointer.unlink()


def guard_work_dir(
    work_dir: str | os.PathLike,
    config: Mapping,
    dirs: Iterable[str | os.PathLike] = (),
    run: Mapping[str, Any] | None = None,
) -> str:
    """Keep the checkpoints of ``work_dir`` for a resume only when they were made with the same fingerprint of
    ``config`` (its input folders ``dirs``, and ``run``: options that decide the run outside the config, such as the
    number of processes); otherwise move them to ``stale/<old fingerprint>/`` and log the keys that differ. Records
    the fingerprint (``config.sha256``) and its identified config (``fingerprint.json``); returns the fingerprint."""
    work_dir = Path(work_dir)
    identified = identified_config(config, dirs)
    if run:
        identified["_run"] = identified_config(run)
    new = fingerprint(identified)
    stamp, manifest = work_dir / STAMP, work_dir / MANIFEST
    old = stamp.read_text().strip() if stamp.is_file() else None
    leftovers = _checkpoints(work_dir) if work_dir.is_dir() else []
    if leftovers and old != new:
        stale = work_dir / "stale" / (old or "unknown")[:16]
        stale.mkdir(parents=True, exist_ok=True)
        for path in leftovers:
            path.replace(stale / path.name)
        try:
            why = ", ".join(differences(atomic.read_json(manifest), identified)) if old else "no fingerprint recorded"
        except ValueError:
            why = f"no readable {MANIFEST}"
        log.warning(
            "%s: %d checkpoint file(s) of another run (%s) moved to %s; training starts afresh. Changed: %s",
            work_dir,
            len(leftovers),
            (old or "no fingerprint")[:12],
            stale,
            why or "?",
        )
    elif leftovers:
        _relocate_last_checkpoint(work_dir)
        log.info("%s: checkpoints of the same run (fingerprint %s): resuming", work_dir, new[:12])
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(manifest, identified, compact=False)
    with atomic.atomic_path(stamp) as tmp:
        tmp.write_text(new + "\n")
    return new


def initial_weights(cfg, work_dir: str | os.PathLike) -> None:
    """Choose how ``cfg`` (an mmengine config with ``resume=True``) starts: from the checkpoints of ``work_dir``
    when there are any (``load_from`` cleared: mmengine would otherwise "resume" the initial weights, optimizer
    and iteration included), else from ``load_from`` loaded non-strictly (matching names only) as a fresh run."""
    if not cfg.get("load_from") or not cfg.get("resume"):
        return
    from mmengine.runner import find_latest_checkpoint

    if find_latest_checkpoint(str(work_dir)):
        cfg["load_from"] = None
    else:
        cfg["resume"] = False
        log.info("initial weights: %s (non-strict: matching names only)", cfg["load_from"])
