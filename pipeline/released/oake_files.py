"""The reference's per-image OAKE files (LutingWang/OADP ``oadp/oake/{globals,blocks,objects}.py``) and their
conversion to this pipeline's shard rows.

Each file is one ``torch.save`` of L2-normalised CLIP ViT-B/32 embeddings in float16 (D = 512):

- globals: a tensor ``[D]`` (the reference squeezes the ``[1, D]`` batch; ``[1, D]`` is read as well);
- blocks: ``{"embeddings": [Nb, D], "bboxes": [Nb, 4]}``, the boxes float16 xyxy pixels of the original image, in
  the block order of :func:`pipeline.models.clip.geometry.block_boxes`; block 0's box is the reference's
  xywh-style quirk ``((W - H) / 2, 0, H, H)`` (W > H) or ``(0, (H - W) / 2, W, W)``;
- objects: ``{"embeddings": [N, D], "bboxes": [N, 4], "objectness": [N, 1]}``: the proposals with w, h >= 4
  (xyxy pixels, float16) and their scores.

Conversion (:func:`to_rows`): embeddings are kept as they are (float16 rows are stored exactly); block boxes are
checked against the block geometry of the image's size (within float16 rounding) and replaced by the exact
float32 boxes, block 0 in the project's convention (``centre`` xyxy) or the reference's (``reference_quirk``);
object boxes become float32, objectness ``[N]``. Anything else (a missing or extra key, a wrong shape or dtype,
rows that are not unit-norm) is refused, naming the file and the key.

Files are read with the restricted unpickler of :mod:`pipeline.core.safe_pickle` (tensors only; the legacy
non-zip format with ``torch.load(weights_only=True)``): a file whose pickle names anything else is refused
before anything in it runs.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pipeline.core import safe_pickle
from pipeline.formats.feature_cache import NORM_TOL
from pipeline.models.clip import geometry

KEYS = {"blocks": ("embeddings", "bboxes"), "objects": ("embeddings", "bboxes", "objectness")}
FLOATS = (torch.float16, torch.float32)
_WHAT = "a released OAKE file may only hold tensors"


class ReleasedFileError(ValueError):
    """A released file that is unsafe or not in the reference's format; the message names the file (and key)."""


def load(data: bytes, where: str) -> Any:
    """Unpickle one ``torch.save`` file from its bytes, tensors only.

    Raises:
        ReleasedFileError: the pickle names anything but tensor rebuilding (nothing was run), or is unreadable.
    """
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return safe_pickle.read_torch_archive(zf, _WHAT)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except safe_pickle.UnsafePickleError as exc:
        raise ReleasedFileError(f"{where}: refused, {exc}") from None
    except pickle.UnpicklingError as exc:  # weights_only refuses a global: nothing was run
        raise ReleasedFileError(f"{where}: refused, not a tensors-only file (nothing was run): {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise ReleasedFileError(f"{where}: not a readable torch file ({type(exc).__name__}: {exc})") from None


def _tensor(value: Any, where: str, key: str, shape: tuple, dim: int) -> np.ndarray:
    """``value`` as float32 numpy after checking it is a float16/32 tensor of ``shape`` (-1: any, "D": ``dim``)."""
    if not isinstance(value, torch.Tensor):
        raise ReleasedFileError(f"{where}: key {key!r} is a {type(value).__name__}, expected a tensor")
    expected = tuple(dim if s == "D" else s for s in shape)
    if value.ndim != len(expected) or any(e != -1 and e != s for e, s in zip(expected, value.shape, strict=True)):
        text = "x".join("N" if e == -1 else str(e) for e in expected)
        raise ReleasedFileError(f"{where}: key {key!r} has shape {list(value.shape)}, expected [{text}]")
    if value.dtype not in FLOATS:
        raise ReleasedFileError(f"{where}: key {key!r} is {value.dtype}, expected float16 (or float32)")
    array = value.detach().float().numpy()
    if not np.isfinite(array).all():
        raise ReleasedFileError(f"{where}: key {key!r} holds non-finite values")
    return array


def _check_norms(embeddings: np.ndarray, where: str, key: str) -> None:
    norms = np.linalg.norm(embeddings, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > NORM_TOL)
    if bad.size:
        raise ReleasedFileError(
            f"{where}: key {key!r}: rows {bad[:5].tolist()} are not L2-normalised (norms {norms[bad[:5]].round(4)})"
        )


def read(data: bytes, kind: str, where: str, dim: int) -> dict[str, np.ndarray]:
    """One released file of ``kind`` as float32 arrays under the reference's keys: ``embeddings [n, D]``, and
    ``bboxes [n, 4]`` (blocks, objects), ``objectness [n]`` (objects).

    Raises:
        ReleasedFileError: unsafe or unreadable file, missing or extra key, wrong type, shape or dtype, rows that
            are not unit-norm (names ``where`` and the key).
    """
    obj = load(data, where)
    if kind == "globals":
        if isinstance(obj, torch.Tensor) and obj.ndim == 1:
            obj = obj[None]
        emb = _tensor(obj, where, "(tensor)", (1, "D"), dim)
        _check_norms(emb, where, "(tensor)")
        return {"embeddings": emb}
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ReleasedFileError(f"{where}: a {type(obj).__name__}, expected a dict with keys {list(KEYS[kind])}")
    missing = [k for k in KEYS[kind] if k not in obj]
    extra = sorted(k for k in obj if k not in KEYS[kind])
    if missing:
        raise ReleasedFileError(f"{where}: missing key {missing[0]!r} (a released {kind} file has {list(KEYS[kind])})")
    if extra:
        raise ReleasedFileError(f"{where}: unexpected key {extra[0]!r} (a released {kind} file has {list(KEYS[kind])})")
    out = {"embeddings": _tensor(obj["embeddings"], where, "embeddings", (-1, "D"), dim)}
    n = len(out["embeddings"])
    out["bboxes"] = _tensor(obj["bboxes"], where, "bboxes", (n, 4), dim)
    if kind == "objects":
        score = obj["objectness"]
        shape = (n,) if isinstance(score, torch.Tensor) and score.ndim == 1 else (n, 1)
        out["objectness"] = _tensor(score, where, "objectness", shape, dim).reshape(n)
    _check_norms(out["embeddings"], where, "embeddings")
    return out


def block_boxes(released: np.ndarray, width: int, height: int, block0: str, where: str) -> np.ndarray:
    """The exact ``[Nb, 4]`` float32 block boxes of a ``width`` x ``height`` image (block 0 per ``block0``), after
    checking that the released float16 boxes are the reference's for that size.

    Raises:
        ReleasedFileError: another block count, or boxes off by more than float16 rounding (names the file).
    """
    expected = geometry.block_boxes(width, height, block0="reference_quirk")
    if released.shape != expected.shape:
        raise ReleasedFileError(
            f"{where}: key 'bboxes' has {len(released)} blocks, the block pyramid of a {width}x{height} image "
            f"(the annotation file's size) has {len(expected)}"
        )
    off = ~np.isclose(released, expected, rtol=2e-3, atol=1e-2)
    if off.any():
        row = int(np.flatnonzero(off.any(1))[0])
        raise ReleasedFileError(
            f"{where}: key 'bboxes' row {row} is {released[row].tolist()}, the block geometry of a {width}x{height} "
            f"image gives {expected[row].tolist()}"
        )
    return geometry.block_boxes(width, height, block0=block0)


def to_rows(released: dict[str, np.ndarray], kind: str, size: tuple[int, int], block0: str, where: str) -> dict:
    """Arguments of :meth:`ShardWriter.add` (``embeddings``, ``boxes``, ``objectness``) for one released file of an
    image of ``size`` = (width, height)."""
    rows: dict[str, Any] = {"embeddings": released["embeddings"]}
    if kind == "blocks":
        rows["boxes"] = block_boxes(released["bboxes"], *size, block0, where)
    elif kind == "objects":
        rows["boxes"], rows["objectness"] = released["bboxes"], released["objectness"]
    return rows
