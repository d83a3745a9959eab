"""One way to load CLIP, offline: OpenAI ``.pt`` (JIT or state dict), open_clip checkpoints, HF CLIP folders.

Everything becomes an open_clip ``CLIP`` in float32 eval mode, the model the OAKE variants and the text encoder
run on. Nothing is downloaded: a missing file is an error that says what is expected and how to get it.
``weights="random"`` builds the named architecture from a fixed seed (demo and tests); the returned
:class:`LoadedClip` records it and the log warns. Every load logs the model name, the weights path and their
sha256 (hashed once per process), or ``random (seed N)``; open_clip's own "No pretrained weights loaded"
notice is dropped, since the project sets the weights itself (:func:`create_architecture`).
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from pipeline.core import safe_pickle
from pipeline.core.hashing import sha256_files_cached
from pipeline.models.clip import configs, convert

log = logging.getLogger(__name__)

RANDOM = "random"
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_HOW_TO_GET = (
    "expected one of: an OpenAI CLIP file such as ViT-B-32.pt (from the OpenAI CLIP release, e.g. "
    "`python -c \"import clip; clip.load('ViT-B/32', download_root='pretrained/clip')\"` on a machine with "
    "internet), an open_clip checkpoint (.pt/.pth/.bin/.safetensors), or a Hugging Face CLIP folder "
    "(config.json + model.safetensors, e.g. `huggingface-cli download openai/clip-vit-base-patch32`). "
    "Nothing is downloaded by the pipeline"
)


class CLIPLoadError(ValueError):
    """Weights that cannot be loaded; the message names the file and what was expected."""


@dataclass
class LoadedClip:
    """A loaded CLIP and where its weights came from.

    Attributes:
        model: open_clip ``CLIP``, float32, eval mode, no grad.
        name: architecture name (open_clip or :mod:`pipeline.models.clip.configs`).
        weights: the weights path, or ``"random"``.
        source: ``random`` | ``openai-jit`` | ``state-dict`` | ``hf-folder``.
        weights_hash: sha256 of the weight file(s), or ``random-seed<N>``.
    """

    model: CLIP
    name: str
    weights: str
    source: str
    weights_hash: str

    @property
    def is_random(self) -> bool:
        return self.source == RANDOM

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    def provenance(self) -> dict[str, str]:
        """What every output made with this model records."""
        return {
            "clip_model": self.name,
            "clip_weights": self.weights,
            "clip_source": self.source,
            "clip_weights_hash": self.weights_hash,
        }


def _is_open_clip_notice(record: logging.LogRecord) -> bool:
    """A record of open_clip's ``create_model`` that the project's own "CLIP <model>: weights ..." line replaces:
    its INFO lines ("Loaded built-in ViT-B-32 model config.", ...) and its root-logger warning "No pretrained
    weights loaded for model ... Model initialized randomly"; its other warnings pass."""
    if "open_clip" not in record.pathname:
        return False
    return record.levelno < logging.WARNING or record.getMessage().startswith("No pretrained weights loaded")


@contextmanager
def _without_open_clip_notices() -> Iterator[None]:
    """Drop :func:`_is_open_clip_notice` records inside the block (other records pass)."""
    loggers = [logging.getLogger(), logging.getLogger("open_clip"), logging.getLogger("open_clip.factory")]

    def keep(record: logging.LogRecord) -> bool:
        return not _is_open_clip_notice(record)

    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


def create_architecture(name: str, seed: int | None = None, **kwargs) -> CLIP:
    """``open_clip.create_model(name, pretrained=None, **kwargs)`` for a model whose weights the project sets
    itself (a checkpoint loaded next, a seeded init, a training from scratch): initialised from ``seed`` when given
    (the global RNG is left as it was), without open_clip's notices (its INFO lines and "initialized randomly")."""
    configs.register()
    with _without_open_clip_notices(), torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return open_clip.create_model(name, pretrained=None, **kwargs)


def _check_name(name: str) -> None:
    known = configs.known_models()
    if name not in known:
        raise CLIPLoadError(f"unknown CLIP model {name!r}; known models: {', '.join(known)}")


def _finish(model: CLIP, device: str | torch.device) -> CLIP:
    model = model.float().to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _is_jit_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.endswith("constants.pkl") for n in zf.namelist())


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors only, nothing in the file is run: JIT archives through :func:`safe_pickle.torchscript_state_dict`
    (TorchScript is parsed, never executed), everything else via safetensors or ``torch.load(weights_only=True)``.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path)), "state-dict"
        if _is_jit_archive(path):
            return safe_pickle.torchscript_state_dict(path), "openai-jit"
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except safe_pickle.UnsafePickleError as exc:
        raise CLIPLoadError(f"{path}: refused, it is not plain CLIP weights: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt or foreign file
        raise CLIPLoadError(f"{path}: not a readable CLIP checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CLIPLoadError(f"{path}: expected a dict of tensors (a CLIP state dict); {_HOW_TO_GET}")
    return {k.removeprefix("module."): v for k, v in obj.items()}, "state-dict"


def _load_into(model: CLIP, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    own = model.state_dict()
    # non-persistent buffers (open_clip's causal attn_mask) appear in traced archives; they are not weights
    derived = {name for name, _ in model.named_buffers()} - set(own)
    state = {k: v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS and k not in derived}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        raise CLIPLoadError(f"{path} does not fit CLIP model {name!r}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _load_hf_folder(folder: Path) -> tuple[CLIP, list[Path]]:
    from transformers import CLIPModel

    config = json.loads((folder / "config.json").read_text())
    try:
        # weights_only: a pytorch_model.bin is read with torch's tensors-only unpickler, never run
        hf = CLIPModel.from_pretrained(str(folder), local_files_only=True, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CLIPLoadError(f"{folder}: not a loadable Hugging Face CLIP folder ({exc})") from exc
    v, t = hf.config.vision_config, hf.config.text_config
    if v.hidden_act != t.hidden_act or v.hidden_act not in ("quick_gelu", "gelu"):
        raise CLIPLoadError(f"{folder}: activation {v.hidden_act}/{t.hidden_act} is not supported")
    model = CLIP(
        hf.config.projection_dim,
        vision_cfg=CLIPVisionCfg(
            layers=v.num_hidden_layers,
            width=v.hidden_size,
            head_width=v.hidden_size // v.num_attention_heads,
            mlp_ratio=v.intermediate_size / v.hidden_size,
            patch_size=v.patch_size,
            image_size=v.image_size,
        ),
        text_cfg=CLIPTextCfg(
            context_length=t.max_position_embeddings,
            vocab_size=t.vocab_size,
            width=t.hidden_size,
            heads=t.num_attention_heads,
            layers=t.num_hidden_layers,
            mlp_ratio=t.intermediate_size / t.hidden_size,
        ),
        quick_gelu=v.hidden_act == "quick_gelu",
    )
    state = convert.hf_to_open_clip(hf.state_dict())
    _load_into(model, state, folder, config.get("_name_or_path") or folder.name)
    files = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    return model, files


def load_clip(name: str, weights: str, device: str | torch.device = "cpu", seed: int = 0) -> LoadedClip:
    """Load CLIP architecture ``name`` with ``weights`` (a path, or ``"random"``).

    Args:
        name: an open_clip model name (``ViT-B-32``) or a tiny config (``OADP-Tiny-ViT-32``). For a Hugging
            Face folder the architecture comes from its ``config.json``; ``name`` is only recorded.
        weights: OpenAI ``.pt`` (JIT archive or state dict), open_clip checkpoint, HF CLIP folder, or
            ``"random"`` (seeded initialisation; outputs record it and the log warns).
        device: where the model goes.
        seed: the seed of random weights.

    Raises:
        CLIPLoadError: unknown name, missing / corrupt / mismatched weights (the message names them).
    """
    if weights == RANDOM:
        _check_name(name)
        model = create_architecture(name, seed=seed)
        log.warning("CLIP %s has RANDOM weights (clip.weights: random): embeddings carry no knowledge", name)
        log.info("CLIP %s: weights random (seed %d)", name, seed)
        return LoadedClip(_finish(model, device), name, RANDOM, RANDOM, f"random-seed{seed}")
    path = Path(weights)
    if not path.exists():
        raise CLIPLoadError(f"CLIP weights not found at {path} (clip.weights); {_HOW_TO_GET}")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise CLIPLoadError(f"{path}: a Hugging Face CLIP folder needs config.json; {_HOW_TO_GET}")
        model, files = _load_hf_folder(path)
        return _loaded(_finish(model, device), name, path, "hf-folder", files)
    _check_name(name)
    state, source = _read_state_dict(path)
    openai = source == "openai-jit" or any(k in state for k in _OPENAI_EXTRA_KEYS)
    # OpenAI weights were trained with QuickGELU; open_clip's plain names use GELU.
    model = create_architecture(name, force_quick_gelu=openai)
    _load_into(model, state, path, name)
    return _loaded(_finish(model, device), name, path, source, [path])


def _loaded(model: CLIP, name: str, path: Path, source: str, files: list[Path]) -> LoadedClip:
    """The :class:`LoadedClip` of weights read from ``files``, logged with their sha256."""
    digest = sha256_files_cached(files)
    log.info("CLIP %s: weights %s (sha256 %s, %s)", name, path, digest, source)
    return LoadedClip(model, name, str(path), source, digest)
