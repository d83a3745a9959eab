"""``prompt``: a prompt file of the reference's layout (its released ``ml_coco.pth``, or ``vild.pth``) as this
pipeline's prompt file (:mod:`pipeline.formats.prompt_file`).

The reference's layout (``oadp/prompts/vild.py`` writes it, ``oadp/dp/classifiers.py`` reads it): a dict
``names: list[str]`` (K class names), ``embeddings: [K, D]`` float tensor (row i is ``names[i]``) and, for the
learned ``ml`` prompt, ``scaler`` and ``bias``, each a one-element tensor (or a float). The file is loaded with
``torch.load(weights_only=True)``: one whose pickle names anything beyond tensors and plain containers is refused
before anything in it runs. Every class name of the dataset (``--names-from``) must be in the file; its rows and
``scaler`` / ``bias`` are kept as they are (the embeddings as float32).

``python -m pipeline.released prompt --input ml_coco.pth --names-from instances_val2017.65.json --output ml.pth``
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.hashing import sha256_file
from pipeline.core.options import option
from pipeline.formats.annotation_file import vocabulary
from pipeline.formats.prompt_file import PromptError, save
from pipeline.released import STAGE

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

REQUIRED = ("names", "embeddings")
OPTIONAL = ("scaler", "bias")


@dataclass(frozen=True, kw_only=True)
class PromptOptions:
    """prompt: a prompt file of the reference's layout (ml_coco.pth, vild.pth) into this pipeline's format."""

    input: Path = option(help="the reference's prompt file, e.g. ml_coco.pth (input)")
    names_from: tuple[Path, ...] = option(
        help="annotation JSONs whose category names must all be in the file (inputs)", nargs="+"
    )
    kind: str = option("ml", help="what the file is, recorded in meta (ml, vild)")
    output: Path = option(help="prompt file .pth (output)")


def _scalar(obj: Mapping, key: str, path: Path) -> float:
    import torch

    value = obj[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = value.item()
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise PromptError(f"{path}: key {key!r} must be a number or a one-element float tensor, got {value!r:.80}")
    return float(value)


def read_reference(path: Path) -> tuple[list[str], torch.Tensor, float | None, float | None]:
    """(names, ``[K, D]`` float32 embeddings, scaler, bias) of a prompt file of the reference's layout.

    Raises:
        PromptError: an unsafe or unreadable file, a missing or unexpected key, names that are not distinct
            strings, embeddings that are not a finite ``[len(names), D]`` float tensor, ``scaler`` without
            ``bias`` (each names the file and the key).
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PromptError(f"{path}: refused, not a tensors-only file (nothing was run): {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise PromptError(f"{path}: not a readable torch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Mapping):
        raise PromptError(f"{path}: a {type(obj).__name__}, expected a dict with keys {list(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in obj]
    extra = sorted(str(k) for k in obj if k not in REQUIRED + OPTIONAL)
    if missing:
        raise PromptError(f"{path}: missing key {missing[0]!r} (the reference's layout: {list(REQUIRED + OPTIONAL)})")
    if extra:
        raise PromptError(f"{path}: unexpected key {extra[0]!r} (the reference's layout: {list(REQUIRED + OPTIONAL)})")
    names: Any = obj["names"]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise PromptError(f"{path}: key 'names' must be a list of strings")
    if len(set(names)) != len(names):
        raise PromptError(f"{path}: key 'names' repeats {sorted({n for n in names if names.count(n) > 1})[:10]}")
    emb = obj["embeddings"]
    if not isinstance(emb, torch.Tensor) or not emb.is_floating_point() or emb.ndim != 2 or len(emb) != len(names):
        got = list(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise PromptError(f"{path}: key 'embeddings' must be a float tensor [{len(names)}, D], got {got}")
    if not torch.isfinite(emb).all():
        raise PromptError(f"{path}: key 'embeddings' holds non-finite values")
    if ("scaler" in obj) != ("bias" in obj):
        raise PromptError(
            f"{path}: missing key {'bias' if 'scaler' in obj else 'scaler'!r} (scaler and bias go together)"
        )
    scaler = _scalar(obj, "scaler", path) if "scaler" in obj else None
    bias = _scalar(obj, "bias", path) if "bias" in obj else None
    return list(names), emb.detach().float(), scaler, bias


@STAGE.command("prompt", PromptOptions, "import a prompt file of the reference's layout (ml_coco.pth)")
def run_prompt(opts: PromptOptions) -> None:
    """Check the file's layout and names against the vocabulary of ``names_from``, then write the prompt file.

    Raises:
        PromptError: see :func:`read_reference`; or class names of the dataset missing from the file (listed).
    """
    names, emb, scaler, bias = read_reference(opts.input)
    vocab = vocabulary(opts.names_from)
    absent = [n for n in vocab if n not in set(names)]
    if absent:
        raise PromptError(
            f"{opts.input}: {len(absent)} class name(s) of {[str(p) for p in opts.names_from]} are not in the file: "
            f"{absent[:20]}{' ...' if len(absent) > 20 else ''}"
        )
    meta = {
        "kind": opts.kind,
        "origin": "released",
        "source": str(opts.input),
        "source_sha256": sha256_file(opts.input),
        "learned": str(scaler is not None),
    }
    log.info(
        "%s: %d names (%d of the dataset), D = %d, scaler %s, bias %s",
        opts.input,
        len(names),
        len(vocab),
        emb.shape[1],
        scaler,
        bias,
    )
    save(opts.output, names, emb, meta, scaler=scaler, bias=bias)
