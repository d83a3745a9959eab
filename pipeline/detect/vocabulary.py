"""The inputs of ``pipeline.detect``: the vocabulary, its text embeddings, the CLIP, and the images.

:func:`parse_vocabulary` reads ``"a, b, c"`` and :func:`read_vocabulary_file` a text file (one name per line, ``#``
comments); names are stripped, empty ones dropped, a repeated name is an error, and so are two names that
differ only by case or spacing (:func:`pipeline.core.vocab.check_distinct`). :func:`prompt_rows` embeds names the
way a stored prompt file of the checkpoint was made (``meta.kind``): ``vild`` with the ViLD template ensemble
(``meta.renormalized``; a progress line per 10 % of the templates for :data:`PROGRESS_NAMES` names or more), a
file with a learned ``context`` (``ml``) with that context; ``scaler`` / ``bias`` are kept. :func:`recorded_clip` is
the CLIP those prompt files record. :func:`image_items` lists image files and folders (recursively) as
:class:`pipeline.core.images.ImageItem` s.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.images import ImageItem
from pipeline.core.vocab import check_distinct

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: a vocabulary of this many names or more logs the progress of its embedding
PROGRESS_NAMES = 500


def parse_vocabulary(text: str) -> list[str]:
    """Names from ``"a, b, c"`` (a text that names a file is a name too: files come by
    :func:`read_vocabulary_file`)."""
    return _checked([n.strip() for n in text.split(",")], "--vocabulary")


def read_vocabulary_file(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file, one per line; lines starting with ``#`` are comments.

    Raises:
        ValueError: the file is missing or unreadable, has no name, or repeats one (names the file).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--vocabulary-file {path}: {err}") from None
    return _checked([n.strip() for n in lines if not n.strip().startswith("#")], str(path))


def vocabulary_names(names: str | Sequence[str] | None = None, file: str | Path | None = None) -> list[str]:
    """The names of exactly one of ``names`` (``"a, b"`` or a list of names) and ``file``
    (:func:`read_vocabulary_file`).

    Raises:
        ValueError: both or neither given, or the names are empty or repeated.
    """
    if (names is None) == (file is None):
        raise ValueError("give the class names either as --vocabulary 'a, b, ...' or as --vocabulary-file FILE")
    if file is not None:
        return read_vocabulary_file(file)
    if isinstance(names, str):
        return parse_vocabulary(names)
    return _checked([str(n).strip() for n in names], "vocabulary")


def _checked(names: list[str], source: str) -> list[str]:
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{source}: no class names")
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise ValueError(f"{source}: repeated names {repeated}")
    check_distinct(names, source)
    return names


def _folder_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` and its subfolders (hidden files and folders left out), sorted."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
    return sorted(found)


def image_items(paths: Sequence[str | Path], limit: int | None = None) -> list[ImageItem]:
    """Image files of ``paths`` (files, and the image files of folders and their subfolders), sorted by path, the
    first ``limit`` of them (none: all), with ids: the file stems when all are distinct numbers, else 1-based
    positions. A missing path or two files with one stem is an error."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += _folder_images(p)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: no such image file or folder")
    files = sorted(set(files))[:limit]
    if not files:
        raise ValueError(f"no image files in {[str(p) for p in paths]}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ValueError(f"{f} and {stems[f.stem]}: two images named {f.stem!r} (pictures are named by stem)")
        stems[f.stem] = f
    numeric = all(f.stem.isdigit() for f in files)
    return [ImageItem(int(f.stem) if numeric else i + 1, f) for i, f in enumerate(files)]


def prompt_rows(stored: Mapping, names: Sequence[str], clip, checkpoint: str | Path) -> dict:
    """A prompt dict for ``names`` made like ``stored`` (a prompt file stored in ``checkpoint``) with ``clip``
    (:class:`pipeline.models.clip.LoadedClip`, which must be the CLIP the file recorded: architecture and weights
    hash): ``{names, embeddings [K, D][, scaler, bias]}``."""
    from pipeline.models.clip import text

    meta = stored.get("meta") or {}
    kind = meta.get("kind")
    recorded = (meta.get("clip_model"), meta.get("clip_weights_hash"))
    if recorded[1] and recorded != (clip.name, clip.weights_hash):
        raise ValueError(
            f"{checkpoint}: its {kind} prompts were made with CLIP {recorded[0]} {meta.get('clip_weights')} "
            f"(weights {recorded[1][:12]}), not {clip.name} {clip.weights} ({clip.weights_hash[:12]}): give the "
            "experiment's CLIP (clip.model, clip.weights)"
        )
    if not meta:
        log.warning("%s: stored prompts without meta (older final.pth): assuming the CLIP given made them", checkpoint)
    if "context" in stored:
        if len(names) >= PROGRESS_NAMES:
            log.info("embedding %d names with the learned context of the %s prompts", len(names), kind or "ml")
        embeddings = text.context_embeddings(clip.model, names, stored["context"])
    elif kind == "vild" or (kind is None and "scaler" not in stored):
        renormalize, progress = meta.get("renormalized") == "True", len(names) >= PROGRESS_NAMES
        if progress:
            log.info("embedding %d names with the ViLD templates (a line per 10%% of the templates)", len(names))
        embeddings = text.vild_embeddings(clip.model, names, renormalize=renormalize, progress=progress)
    else:
        raise ValueError(
            f"{checkpoint}: a classifier reads {kind or 'learned'} prompts without a recipe for new names (vild "
            "templates or an ml prompt's learned context): rebuild that prompt file and retrain"
        )
    out = {"names": list(names), "embeddings": embeddings.float()}
    if "scaler" in stored:
        out["scaler"], out["bias"] = float(stored["scaler"]), float(stored["bias"])
    return out


def recorded_clip(stored: Mapping[str, Mapping], checkpoint: str | Path) -> tuple[str, str]:
    """``(clip model, clip weights)`` that the prompt files stored in ``checkpoint`` record (``{path: prompt dict}``).

    A recorded weights path that is no file from the working directory is looked up from the folder holding the
    checkpoint's ``results/`` folder too (a run read from elsewhere: ``other/results/train/E/final.pth`` with
    ``results/teacher/clip.pt`` -> ``other/results/teacher/clip.pt``).

    Raises:
        ValueError: no stored prompt file records its CLIP, or two record different ones (names the checkpoint).
    """
    recorded = {
        (m["clip_model"], m["clip_weights"])
        for m in ((p.get("meta") or {}) for p in stored.values())
        if m.get("clip_model") and m.get("clip_weights")
    }
    if not recorded:
        raise ValueError(
            f"{checkpoint}: its prompts do not record their CLIP (older final.pth): "
            "give --clip-model and --clip-weights"
        )
    if len(recorded) > 1:
        raise ValueError(f"{checkpoint}: its prompt files record different CLIPs {sorted(recorded)}: give --clip-model")
    model, weights = recorded.pop()
    if weights != "random" and not Path(weights).exists() and not Path(weights).is_absolute():
        for folder in Path(checkpoint).resolve().parents:
            if folder.name == "results" and (folder.parent / weights).exists():
                return model, str(folder.parent / weights)
    return model, weights
