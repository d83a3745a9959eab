"""``python -m pipeline.released detector``: a released detector checkpoint of the reference -> ``final.pth``.

The reference (LutingWang/OADP, mmdet 2.25 / mmcv 1.7) releases ``work_dirs/oadp_ov_coco/iter_32000.pth`` and
``work_dirs/oadp_ov_lvis/epoch_24.pth``: mmcv's ``torch.save`` of ``{"meta", "state_dict"[, "optimizer"]}``, where
``meta`` holds plain values (``env_info`` and ``config`` text, ``mmdet_version``, ``mmcv_version``, ``classes``,
``iter``, ``epoch``, ``time``, ``hook_msgs``, ``fp16``) and ``state_dict`` an ``OrderedDict`` of tensors named after
the reference's modules. The file is read by :func:`read_released` without running any of its code, every tensor is
renamed by :data:`~pipeline.released.detector_keys.KEY_TABLE` (or, for the step counters of the reference's loss
weights, by :func:`~pipeline.released.detector_keys.counter_keys`)
and checked against the experiment's model built here: a key without a rule, a key the model lacks, a tensor the
model has that the file lacks and a tensor of another shape or kind are one error listing every one of them, naming
the file. mmcv 1.x saves non-persistent buffers too, so the released files also hold ``roi_head._lambda`` (the
ensemble exponents ``[K+1]``) and each text classifier's ``_embeddings`` (its prompt rows ``[K, D]``): these are not
loaded (the model builds them from the experiment's config and prompt files) but compared with what the model built,
so that an import with other exponents or other prompts than the file was trained with fails naming the prompt file
(:func:`check_buffers`). The converted model is written as ``pipeline.train fit`` writes ``final.pth``
(:mod:`pipeline.models.detector.checkpoint`), with ``meta["imported"]`` saying where it came from; predict, evaluate
and the report take it as a trained experiment.

:func:`~pipeline.released.detector_keys.to_reference` and :func:`write_reference_checkpoint` are the inverse (this
project's state dict -> the reference's file layout), used to check the table on a model trained here.
"""

from __future__ import annotations

import copy
import logging
import pickle
import shlex
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import atomic
from pipeline.core.hashing import sha256_file
from pipeline.core.options import dict_action, key_value, option
from pipeline.core.safe_pickle import UnsafePickleError, read_torch_archive
from pipeline.released import STAGE
from pipeline.released.detector_keys import (
    COUNTER,
    EXTRA_STATE,
    LAMBDA,
    REVERSE_TABLE,
    counter_keys,
    prompt_files,
    reference_buffers,
    rename,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: a row of the file's class embeddings agrees with the prompt file's when ``|ref - here| <= ROW_TOLERANCE * |here|``
#: (fp16 storage and another device's arithmetic move a CLIP text embedding by ~1e-3 of its norm; other templates or
#: another kind of prompt by far more)
ROW_TOLERANCE = 0.01
_ONLY = "a released detector checkpoint may only hold tensors and plain values"


class ReleasedFormatError(ValueError):
    """A released file that is not in the reference's format or does not fit the experiment (names the file)."""


def check_buffers(source: Mapping[str, torch.Tensor], model, files: Mapping[str, str] | None = None) -> list[str]:
    """What the released non-persistent buffers in ``source`` say against ``model``: one line per disagreement
    (another shape, other ensemble exponents, class embeddings that are not the rows of the prompt file named by
    ``files[module]``). A buffer the file lacks is not a problem: it holds nothing learned."""
    import torch

    files = files or {}
    problems = []
    for key, (module, here) in reference_buffers(model).items():
        if key not in source:
            continue
        value = source[key].detach().float()
        if key == LAMBDA:
            roi, k = model.roi_head, len(here) - 1
            if value.shape != here.shape:
                problems.append(f"{key} {_shape(value)} (this experiment's ensemble has {k} classes + background)")
            elif not torch.allclose(value[:k], here[:k], atol=1e-3):  # fp16 storage: 2/3 within 2e-4
                problems.append(
                    f"{key}: the file's ensemble exponents (base {_exponents(value[: roi.num_base])}, novel "
                    f"{_exponents(value[roi.num_base : k])}) are not this experiment's (roi_head.ensemble: "
                    f"lambda_base {roi.ensemble['lambda_base']:.4g}, lambda_novel {roi.ensemble['lambda_novel']:.4g}"
                    f", {roi.num_base} bases of {k} classes)"
                )
            continue
        prompt = files.get(module, f"the prompt file of {module}")
        if value.shape != here.shape:
            problems.append(
                f"{key} {_shape(value)}: the class embeddings the file was trained with, but {prompt} gives "
                f"{_shape(here)} for this experiment's classes"
            )
            continue
        error = (value - here).norm(dim=1) / here.norm(dim=1).clamp(min=1e-12)
        bad = torch.nonzero(error > ROW_TOLERANCE).flatten().tolist()
        if bad:
            problems.append(
                f"{key}: the class embeddings the file was trained with are not the rows of {prompt} "
                f"({len(bad)} of {len(here)} classes differ, e.g. class {bad[0]} by {float(error[bad[0]]):.3g} of its "
                "norm): the wrong prompt file for this checkpoint?"
            )
    return problems


def _exponents(values: torch.Tensor) -> str:
    found = sorted({round(float(v), 4) for v in values})
    return "/".join(f"{v:.4g}" for v in found) or "-"


def read_released(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of a released mmdet-2 checkpoint, unpickled with tensors and plain containers only.

    Raises:
        UnsafePickleError: the pickle names anything else (code it would run); nothing it names was run.
        ReleasedFormatError: not a torch zip archive, unreadable, or no ``state_dict`` of tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ReleasedFormatError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ReleasedFormatError(
            f"{path}: not a torch zip archive (what torch.save writes since torch 1.6, and mmcv for the released "
            "checkpoints); nothing was unpickled"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            obj = read_torch_archive(zf, _ONLY)
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: refused: {err}") from None
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise ReleasedFormatError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, Mapping):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ReleasedFormatError(f"{path}: no 'state_dict' mapping (found {found}): not an mmcv checkpoint")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ReleasedFormatError(f"{path}: state_dict entries that are not named tensors: {bad[:10]}")
    meta = obj.get("meta")
    return dict(state), dict(meta) if isinstance(meta, Mapping) else {}


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def to_project(source: Mapping[str, torch.Tensor], model, where: str, files: Mapping[str, str] | None = None) -> dict:
    """The state dict for ``model`` from a released one: tensors renamed by :data:`KEY_TABLE` (floats cast to the
    model's dtype), counters into the warm-up schedules, the model's own extra state otherwise; the reference's
    non-persistent buffers checked by :func:`check_buffers` (``files``: classifier module -> prompt file).

    Raises:
        ReleasedFormatError: every key without a rule or a place in the model, every tensor of the model that
            ``source`` lacks, every tensor of another shape or kind, every buffer that disagrees with the
            experiment (``where`` names the file and experiment)."""
    target = model.state_dict()
    counters = counter_keys(model)
    buffers = reference_buffers(model)
    out = {k: copy.deepcopy(v) for k, v in target.items() if k.endswith(EXTRA_STATE)}
    unmatched, unexpected, wrong, taken = [], [], [], set()
    for key, value in source.items():
        if COUNTER.match(key):
            if key not in counters:
                unexpected.append(f"{key} (a loss-weight counter of a head this model does not have)")
            elif value.ndim != 0 or value.is_floating_point():
                wrong.append(f"{key} {value.dtype} {_shape(value)} (expected a 0-dim integer step counter)")
            else:
                state_key, schedule = counters[key]
                out[state_key][schedule] = {"iteration": int(value)}
                taken.add(key)
            continue
        if key in buffers:
            continue  # compared below, never loaded
        if key == LAMBDA:
            unexpected.append(f"{key} (the ensemble exponents of an object head this model does not have)")
            continue
        new = rename(key)
        # the name must rename back to the key: this project's own names (fc_cls.linear) are not the reference's
        if new is None or rename(new, REVERSE_TABLE) != key:
            unmatched.append(key)
        elif new not in target or new.endswith(EXTRA_STATE):
            unexpected.append(f"{key} (-> {new})")
        elif value.shape != target[new].shape:
            wrong.append(f"{key} {_shape(value)} (the model's {new} is {_shape(target[new])})")
        elif value.is_floating_point() != target[new].is_floating_point():
            wrong.append(f"{key} {value.dtype} (the model's {new} is {target[new].dtype})")
        else:
            out[new] = value.to(target[new].dtype)
    missing = [f"{rename(k, REVERSE_TABLE) or '(no rule)'} (-> {k})" for k in target if k not in out]
    missing += [f"{k} (-> {counters[k][0]}[{counters[k][1]!r}])" for k in counters if k not in taken]
    problems = [
        (unmatched, "keys without a rule of the key table"),
        (unexpected, "keys this model has no place for"),
        (missing, "tensors of this model that the file lacks"),
        (wrong, "tensors of another shape or kind"),
        (check_buffers(source, model, files), "buffers that disagree with this experiment"),
    ]
    if any(found for found, _ in problems):
        lines = [f"{where}: the released checkpoint does not fit the model:"]
        for found, what in problems:
            if found:
                lines.append(f"  {len(found)} {what}: " + ", ".join(found[:30]) + (" ..." if len(found) > 30 else ""))
        lines.append(
            "  (is the experiment's config the one the file was trained with? e.g. the released OV-LVIS "
            "epoch_24.pth has no global head: experiment oadp_ov_lvis_released)"
        )
        raise ReleasedFormatError("\n".join(lines))
    return out


def write_reference_checkpoint(path: str | Path, state_dict: Mapping, meta: Mapping, optimizer=None) -> None:
    """Write ``{"meta", "state_dict"[, "optimizer"]}`` as mmcv's ``save_checkpoint`` does (``torch.save``)."""
    import torch

    obj = {"meta": dict(meta), "state_dict": state_dict}
    if optimizer is not None:
        obj["optimizer"] = optimizer
    with atomic.atomic_path(path, suffix=".pth") as tmp:
        torch.save(obj, tmp)


_PLAIN = (str, int, float, bool, type(None))


def imported_meta(path: Path, meta: Mapping) -> dict:
    """``meta["imported"]`` of the converted ``final.pth``: the file, its sha256 and the released meta's plain
    values (``mmdet_version``, ``iter``, ``env_info``, ``config`` text ...; the number of ``classes``)."""
    out = {"checkpoint": str(path), "sha256": sha256_file(path), "format": "mmdet 2 checkpoint of LutingWang/OADP"}
    out["meta"] = {str(k): v for k, v in meta.items() if isinstance(v, _PLAIN)}
    if isinstance(meta.get("classes"), list | tuple):
        out["meta"]["num_classes"] = len(meta["classes"])
    return out


@dataclass(frozen=True)
class DetectorOptions:
    """detector: a released detector checkpoint of the reference -> final.pth of an experiment."""

    checkpoint: Path = option(help="the released file, e.g. work_dirs/oadp_ov_coco/iter_32000.pth (input)")
    experiment: str = option(help="the experiment it becomes (= its config name unless --config)")
    names_from: Path = option(help="remapped file with every class (input)")
    num_base: int = option(help="number of base classes (ids 0..K-1)")
    output: Path = option(help="final.pth (output)")
    config: str | None = option(None, help="config name or .py file (none: the experiment's)")
    cfg_options: dict | None = option(
        None, help="dotted-key overrides, as mmdet's tools", nargs="+", action=dict_action
    )
    prompt: tuple[tuple[str, str], ...] = option(
        (), help="KIND=FILE prompt file (inputs; repeatable)", type=key_value, action="append"
    )
    argv: tuple[str, ...] = field(default=())  # the raw arguments, recorded in final.pth (not an option)


@STAGE.command("detector", DetectorOptions, "a released detector checkpoint -> final.pth of an experiment")
def run_detector(opts: DetectorOptions) -> None:
    from mmdet.registry import MODELS

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.checkpoint import stored_prompts, write_checkpoint
    from pipeline.models.detector.config import detector_config

    state, source_meta = read_released(opts.checkpoint)  # a refused file stops here, before anything is built
    cats = sorted(atomic.read_json(opts.names_from)["categories"], key=lambda c: c["id"])
    cfg = detector_config(
        opts.config or opts.experiment,
        names=[c["name"] for c in cats],
        num_base=opts.num_base,
        prompts=dict(opts.prompt),
        options=opts.cfg_options,
    )
    register_modules()
    model = MODELS.build(cfg.model)
    where = f"{opts.checkpoint} (experiment {opts.experiment})"
    model.load_state_dict(to_project(state, model, where, prompt_files(cfg.model)))
    meta = {
        "experiment": opts.experiment,
        "argv": shlex.join(opts.argv),
        "config": cfg.to_dict(),
        "prompts": stored_prompts(cfg),
        "imported": imported_meta(opts.checkpoint, source_meta),
    }
    write_checkpoint(opts.output, model.state_dict(), meta)
    log.info(
        "%s: %d tensors (mmdet %s, iteration %s) -> %s",
        opts.checkpoint,
        len(state),
        source_meta.get("mmdet_version", "?"),
        source_meta.get("iter", "?"),
        opts.output,
    )
