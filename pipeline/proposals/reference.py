"""Safe import of the reference's proposal pickles (method section 4).

The files (``oln_r50_fpn_coco_{train,val}.pkl`` ...) come from file-sharing sites. They are a pickled list with
one ``[N_i, 5]`` float array (x1, y1, x2, y2, score; original pixels) per image, in ascending image-id order. A
pickle can run arbitrary code while loading, so they are read with :func:`pipeline.core.safe_pickle.restricted_loads`,
which resolves only the globals a list of numpy arrays needs; anything else (an object whose reduction would run
code) is refused before it is built, and the result is checked to be exactly that structure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.safe_pickle import UnsafePickleError, numpy_array_globals, restricted_loads

__all__ = ["UnsafePickleError", "load_proposal_pickle"]
_ONLY = "a proposals pickle may only hold numpy arrays"


def load_proposal_pickle(path: str | Path) -> list[np.ndarray]:
    """Read a reference proposals pickle safely -> one ``[N_i, 5]`` float32 array per image.

    Raises:
        UnsafePickleError: a forbidden global, or a structure other than a list of ``[N, 5]`` float arrays.
        ValueError: an unreadable file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read proposals pickle ({exc})") from exc
    try:
        obj = restricted_loads(data, numpy_array_globals(), _ONLY)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - truncated or foreign data
        raise ValueError(f"{path}: not a readable proposals pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, list | tuple):
        raise UnsafePickleError(f"{path}: expected a list of [N, 5] arrays, got {type(obj).__name__}")
    out = []
    for i, arr in enumerate(obj):
        if type(arr) is not np.ndarray or arr.dtype.kind != "f" or arr.ndim != 2 or arr.shape[1] != 5:
            what = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}".strip()
            raise UnsafePickleError(f"{path}: entry {i} is {what}, expected a float [N, 5] array")
        out.append(arr.astype(np.float32, copy=False))
    return out
