"""The inputs of ``pipeline.detect``: the vocabulary, its text embeddings, and the images.

:func:`parse_vocabulary` reads ``"a, b, c"`` or a text file (one name per line, ``#`` comments); names are stripped,
empty ones dropped, a repeated name is an error. :func:`prompt_rows` embeds names the way a stored prompt file of
the checkpoint was made (``meta.kind``): ``vild`` with the ViLD template ensemble (``meta.renormalized``), a file with
a learned ``context`` (``ml``) with that context; ``scaler`` / ``bias`` are kept. :func:`image_items` lists image files
and folders as :class:`pipeline.core.images.ImageItem` s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.core.images import ImageItem

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def parse_vocabulary(text: str) -> list[str]:
    """Names from ``"a, b, c"`` or from the text file ``text`` names (one per line)."""
    path = Path(text)
    if "," not in text and "\n" not in text and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        names, source = [n.strip() for n in lines if not n.strip().startswith("#")], str(path)
    else:
        names, source = [n.strip() for n in text.split(",")], "--vocabulary"
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{source}: no class names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{source}: repeated names {repeated}")
    return names


def image_items(paths: Sequence[str | Path], limit: int | None = None) -> list[ImageItem]:
    """Image files of ``paths`` (files, and the image files of folders), sorted by path, the first ``limit`` of them
    (none: all), with ids: the file stems when all are distinct numbers, else 1-based positions. A missing path or
    two files with one stem is an error."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
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
        embeddings = text.context_embeddings(clip.model, names, stored["context"])
    elif kind == "vild" or (kind is None and "scaler" not in stored):
        embeddings = text.vild_embeddings(clip.model, names, renormalize=meta.get("renormalized") == "True")
    else:
        raise ValueError(
            f"{checkpoint}: a classifier reads {kind or 'learned'} prompts without a recipe for new names (vild "
            "templates or an ml prompt's learned context): rebuild that prompt file and retrain"
        )
    out = {"names": list(names), "embeddings": embeddings.float()}
    if "scaler" in stored:
        out["scaler"], out["bias"] = float(stored["scaler"]), float(stored["bias"])
    return out
