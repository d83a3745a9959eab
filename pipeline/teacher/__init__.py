"""Stage ``teacher``: a tiny CLIP pretrained on the demo's captioned crops (issue #9), so that open vocabulary
measurably works in the demo world.

CLIP saw everything: the captions cover every class, base and novel (``"a photo of a red star"``, shape synonyms
too); the detector later sees only base boxes, as in the real setting. The model is a real open_clip ``CLIP`` of
the named config ``OADP-Teacher-ViT-4H`` (:mod:`pipeline.clip.configs`): a class-token ViT with the ViT-B/32 layout
(patch 32 at 224 px), so every OAKE variant (any resolution, half-stride object-aware) runs on it unchanged.

Training: image-text InfoNCE with a learnable logit scale (clamped at 100), symmetric over images and captions;
captions of the same class are all positives of an image (a batch holds each class about ``B / K`` times), which
is plain CLIP InfoNCE when every class appears once. AdamW, linear warm-up then cosine decay over the budget
(``--steps``, ``--seconds`` or both: whichever ends first; ``--steps`` alone is bit-reproducible), seeded model
and data. The crops are drawn by :func:`pipeline.demo_data.draw_caption_crop` in a data worker, each batch used
``--repeat`` times under a different 90-degree rotation / mirror. Two savings, neither changing what is saved:

* only the token-embedding rows that the captions use are trained (``--token-rows caption``, the default; 62 of
  the 49408 rows for the 16 demo classes, the rest keep their seeded initialisation): updating the whole table
  would cost a third of every step. ``--token-rows frozen`` keeps the whole table at its initialisation (the
  first teacher);
* ``--downsample 2`` (default): the patch kernel starts and stays constant on 2 x 2 pixel blocks, and training
  runs on 112 px crops through the 2 x 2-summed kernel at stride 16, which is exactly the model's own 224 px
  forward on the 2x (nearest) upsampled crop, at a quarter of the patch-embedding cost. The saved model is an
  ordinary 224 px CLIP; it sees, in effect, its input averaged over 2 x 2 pixels.

Outputs::

    --output    the CLIP checkpoint: open_clip state dict (a plain dict of float32 tensors; loads with
                torch.load(weights_only=True)). Use it as  clip.model: OADP-Teacher-ViT-4H, clip.weights: <path>.
    --zeroshot  JSON: parameters, training figures, zero-shot accuracy (generalized: argmax cosine over ALL
                classes) on held-out captioned crops and on objects cut from generated scenes (1.0x and 1.5x
                context, the mean of both embeddings, and OAKE's object-aware embedding of the adaptive square),
                for base and novel classes, chance level, per-class accuracy.

The evaluation reloads the written checkpoint through :func:`pipeline.clip.load_clip`, as every later stage does.

``python -m pipeline.teacher --classes "red circle" ... --novel "red star" ... --seconds 240 \\
    --output results/teacher/clip.pt --zeroshot results/teacher/zeroshot.json``
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from pipeline import atomic, cli, demo_data

log = logging.getLogger(__name__)

TEACHER_MODEL = "OADP-Teacher-ViT-4H"
PHOTO_TEMPLATE = "a photo of a {}"
MAX_LOGIT_SCALE = 100.0
AUG_STREAM = 17  # seed stream of the rotation / mirror augmentation
EVAL_BATCH = 128
TOKEN_ROWS = ("caption", "frozen")


class TeacherError(ValueError):
    """Bad teacher options (the message names the option)."""


@dataclass(frozen=True)
class TeacherOptions:
    """Everything the teacher's training and evaluation depend on.

    Attributes:
        classes: every class name (``"<colour> [<texture>] <shape>"``), base and novel.
        novel: the novel names (the rest are base).
        model: the CLIP config (:mod:`pipeline.clip.configs`).
        seed: model initialisation, captioned crops, augmentation and evaluation scenes.
        steps, seconds: the budget; training stops at whichever comes first (at least one is set).
        batch_size: captioned crops per step.
        lr, weight_decay, warmup: AdamW peak learning rate, decoupled weight decay (matrices only), warm-up
            fraction of the budget.
        repeat: steps per rendered batch (each under another rotation / mirror).
        downsample: train on ``224 / downsample`` px crops through the block-pooled patch kernel (module doc).
        threads: CPU threads in all: one data worker (if ``threads >= 2``) and ``threads - 1`` for torch.
        eval_per_class: held-out captioned crops per class.
        scenes: generated 256 px scenes (3-7 objects) whose objects are cut out for evaluation.
        contexts: square context factors of the scene crops (side = factor x the box's long side).
        captions: how the captioned crops are drawn.
        token_rows: ``caption`` trains the token-embedding rows of the caption vocabulary; ``frozen`` trains none.
    """

    classes: tuple[str, ...]
    novel: tuple[str, ...] = ()
    model: str = TEACHER_MODEL
    seed: int = 0
    steps: int | None = None
    seconds: float | None = 240.0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.05
    repeat: int = 2
    downsample: int = 2
    threads: int = 2
    eval_per_class: int = 25
    scenes: int = 40
    contexts: tuple[float, ...] = (1.0, 1.5)
    captions: demo_data.CaptionOptions = demo_data.CaptionOptions()
    token_rows: str = "caption"

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise TeacherError("teacher --classes: at least two are needed")
        unknown = [n for n in self.novel if n not in self.classes]
        if unknown:
            raise TeacherError(f"teacher --novel names not among --classes: {unknown}")
        if len(set(self.classes)) != len(self.classes):
            raise TeacherError(
                f"teacher --classes: repeated names {sorted({c for c in self.classes if self.classes.count(c) > 1})}"
            )
        if self.steps is None and self.seconds is None:
            raise TeacherError("teacher: give a budget, --steps and/or --seconds")
        if (self.steps is not None and self.steps < 1) or (self.seconds is not None and self.seconds <= 0):
            raise TeacherError(f"teacher: budget must be positive (steps={self.steps}, seconds={self.seconds})")
        if self.downsample not in (1, 2, 4):
            raise TeacherError(f"teacher --downsample must be 1, 2 or 4, got {self.downsample}")
        if self.batch_size < 2 or self.repeat < 1 or self.threads < 1:
            raise TeacherError("teacher: need --batch-size >= 2, --repeat >= 1, --threads >= 1")
        if self.token_rows not in TOKEN_ROWS:
            raise TeacherError(f"teacher --token-rows must be one of {TOKEN_ROWS}, got {self.token_rows!r}")
        if not self.contexts or min(self.contexts) <= 0:
            raise TeacherError(f"teacher --contexts must be positive, got {self.contexts}")

    @property
    def specs(self) -> tuple[demo_data.ClassSpec, ...]:
        return tuple(demo_data.ClassSpec.parse(c) for c in self.classes)

    @property
    def base(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c not in self.novel)

    @property
    def workers(self) -> int:
        return 1 if self.threads >= 2 else 0


# ------------------------------------------------------------------------------------------------ data


def crop_uint8(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """An ``[S, S, 3]`` crop through CLIP's standard preprocessing (bicubic to ``size``), ``[3, size, size]`` uint8."""
    from pipeline.clip import preprocess

    return preprocess.standard_uint8(Image.fromarray(image), size)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    from pipeline.clip import preprocess

    return preprocess.normalize_uint8(batch)


class CaptionBatches(IterableDataset):
    """The endless, seeded training stream: batch ``b`` holds captioned crops ``(b // repeat) * B ...`` of the
    ``train`` caption split, rotated by ``k * 90`` degrees and maybe mirrored (``k``, mirror seeded by ``b``).

    Yields ``(images [B, 3, 224, 224] float32 normalised, tokens [B, L] int64, categories [B] int64)``.
    """

    def __init__(self, opts: TeacherOptions) -> None:
        self.opts = opts
        self.specs = opts.specs

    def batch(self, b: int, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from pipeline.clip import text

        o = self.opts
        source = b // o.repeat
        if cache is not None and cache.get("source") == source:
            images, tokens, categories = cache["data"]
        else:
            crops = [
                demo_data.draw_caption_crop(self.specs, o.seed, "train", source * o.batch_size + i, o.captions)
                for i in range(o.batch_size)
            ]
            images = torch.stack([crop_uint8(c.image, 224 // o.downsample) for c in crops])
            tokens = text.tokenize([c.caption for c in crops])
            categories = torch.tensor([c.category for c in crops], dtype=torch.int64)
            if cache is not None:
                cache.update(source=source, data=(images, tokens, categories))
        rng = np.random.default_rng([o.seed, AUG_STREAM, b])
        images = torch.rot90(images, int(rng.integers(4)), (2, 3))
        if rng.random() < 0.5:
            images = images.flip(3)
        return normalize(images), tokens, categories

    def __iter__(self):
        if get_worker_info() is not None:
            torch.set_num_threads(1)
        cache: dict = {}
        b = 0
        while True:
            yield self.batch(b, cache)
            b += 1


def caption_test_set(opts: TeacherOptions, captions: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out captioned crops (``test`` caption split): ``[N, 3, 224, 224]`` uint8 and categories ``[N]``.

    ``captions``: the generator's ``captions/captions_test.json`` (``pipeline.demo_data --captions-per-class``);
    its crops are read from ``test/`` beside it. Without it, ``eval_per_class`` crops per class are drawn here.
    """
    if captions is not None:
        return read_caption_set(captions, opts.classes)
    crops = [
        demo_data.draw_caption_crop(opts.specs, opts.seed, "test", i, opts.captions)
        for i in range(opts.eval_per_class * len(opts.classes))
    ]
    return torch.stack([crop_uint8(c.image) for c in crops]), torch.tensor([c.category for c in crops])


def read_caption_set(captions: Path, classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's captioned crops listed in ``captions`` (JSON records ``file_name``, ``caption``,
    ``category``; images in the folder named like the split beside it)."""
    import json

    try:
        records = json.loads(Path(captions).read_text())
    except (OSError, ValueError) as exc:
        raise TeacherError(f"teacher --captions-test {captions}: cannot read ({exc})") from exc
    folder = Path(captions).parent / Path(captions).stem.removeprefix("captions_")
    index = {c: i for i, c in enumerate(classes)}
    images, labels = [], []
    for record in records:
        name = record.get("category") if isinstance(record, dict) else None
        if name not in index:
            raise TeacherError(f"teacher --captions-test {captions}: category {name!r} is not among --classes")
        path = folder / str(record.get("file_name"))
        try:
            with Image.open(path) as im:
                images.append(crop_uint8(np.asarray(im.convert("RGB"))))
        except OSError as exc:
            raise TeacherError(f"teacher --captions-test: image {path} cannot be read ({exc})") from exc
        labels.append(index[name])
    if not images:
        raise TeacherError(f"teacher --captions-test {captions}: no crops listed")
    missing = sorted(set(classes) - {r["category"] for r in records})
    if missing:
        raise TeacherError(f"teacher --captions-test {captions}: no crops of {missing}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _shift_inside(lo: float, side: float, size: int) -> float:
    if side >= size:
        return (size - side) / 2
    return min(max(lo, 0.0), size - side)


def context_square(box: Sequence[float], factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box of the square of side ``factor`` x the long side of ``box`` (xyxy) around its centre, shifted
    inside the image where it fits (as OAKE shifts its squares)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = factor * max(x2 - x1, y2 - y1)
    sx = _shift_inside((x1 + x2 - side) / 2, side, width)
    sy = _shift_inside((y1 + y2 - side) / 2, side, height)
    return tuple(int(round(v)) for v in (sx, sy, sx + side, sy + side))


def scene_objects(opts: TeacherOptions) -> list[tuple[Image.Image, np.ndarray, list[int]]]:
    """Evaluation scenes drawn by :func:`pipeline.demo_data.draw_image` (split ``teacher``, 256 x 256, 3-7 objects,
    no crowd): ``(image, boxes [n, 4] xyxy, categories)`` per scene."""
    dopts = demo_data.DemoOptions(
        out_dir=Path("."),
        classes=opts.classes,
        novel=opts.novel,
        sizes=((256, 256),),
        objects=(3, 7),
        crowd_prob=0.0,
        seed=opts.seed,
    )
    out = []
    for i in range(opts.scenes):
        img, objects = demo_data.draw_image(dopts, "teacher", i)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (o.bbox for o in objects)], np.float32).reshape(-1, 4)
        out.append((Image.fromarray(img), boxes, [o.category for o in objects]))
    return out


# ------------------------------------------------------------------------------------------------ model


def create_model(opts: TeacherOptions):
    """The untrained teacher: open_clip ``CLIP`` of ``opts.model``, initialised from ``opts.seed``."""
    import open_clip

    from pipeline.clip import configs

    configs.register()
    if opts.model not in configs.known_models():
        raise TeacherError(f"teacher --model {opts.model!r} is not a known CLIP config")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        model = open_clip.create_model(opts.model, pretrained=None).float()
        if opts.downsample > 1:
            block_constant_init(model.visual, opts.downsample)
    return model


def block_constant_init(visual, factor: int) -> None:
    """Make the patch kernel constant on ``factor x factor`` blocks (the pooled kernel keeps the default init
    scale). Training through :func:`encode_image_downsampled` keeps it so: every block gets one gradient."""
    w = visual.conv1.weight
    if w.shape[-1] % factor:
        raise TeacherError(f"teacher --downsample {factor} does not divide the patch size {w.shape[-1]}")
    with torch.no_grad():
        sub = w[:, :, ::factor, ::factor] / factor
        w.copy_(sub.repeat_interleave(factor, 2).repeat_interleave(factor, 3))


def pooled_patch_kernel(visual, factor: int) -> torch.Tensor:
    """``[W, 3, P / f, P / f]``: the patch kernel summed over ``f x f`` blocks."""
    w = visual.conv1.weight
    width, channels, patch, _ = w.shape
    q = patch // factor
    return w.reshape(width, channels, q, factor, q, factor).sum((3, 5))


def encode_image_downsampled(visual, images: torch.Tensor, factor: int) -> torch.Tensor:
    """The tower's own forward on the ``factor``-x nearest-upsampled ``images`` (``[B, 3, 224 / f, 224 / f]``),
    computed at their size: the patch convolution of an upsampled image is the pooled kernel at stride P / f.
    Unnormalised ``[B, D]``, like ``visual(images)``."""
    if factor == 1:
        return visual(images)
    kernel = pooled_patch_kernel(visual, factor)
    x = F.conv2d(images, kernel, stride=kernel.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    pooled, _ = visual._pool(visual.transformer(x))
    return pooled @ visual.proj if visual.proj is not None else pooled


def caption_token_ids(opts: TeacherOptions) -> torch.Tensor:
    """The sorted token ids of every caption the stream can draw (every template over every name and synonym)."""
    from pipeline.clip import text

    names = [n for spec in opts.specs for n in (spec.name, *demo_data.class_synonyms(spec))]
    captions = [t.format(n) for t in demo_data.CAPTION_TEMPLATES for n in names]
    return torch.unique(text.tokenize(captions))


class TokenRows(torch.nn.Module):
    """Trainable copies of the token-embedding rows ``ids``; :meth:`embed` looks tokens up in them (other ids in
    the frozen table) and :meth:`write_back` copies them into the table, so the saved model is plain open_clip."""

    def __init__(self, table: torch.nn.Embedding, ids: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.rows = torch.nn.Parameter(table.weight.detach()[ids].clone())
        lookup = torch.full((table.num_embeddings,), -1, dtype=torch.int64)
        lookup[ids] = torch.arange(len(ids))
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("ids", ids.clone(), persistent=False)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        index = self.lookup[tokens]
        frozen = F.embedding(tokens, self.table.weight.detach())
        return torch.where((index >= 0)[..., None], self.rows[index.clamp(min=0)], frozen)

    @torch.no_grad()
    def write_back(self) -> None:
        self.table.weight[self.ids] = self.rows.detach()


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    visual = sum(p.numel() for p in model.visual.parameters())
    token = model.token_embedding.weight.numel()
    return {"total": total, "visual": visual, "text": total - visual, "token_embedding": token}


def contrastive_loss(
    image: torch.Tensor, text_emb: torch.Tensor, categories: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised ``image [B, D]`` and ``text_emb [B, D]``; pairs of the same class are all
    positives (target mass spread evenly over them)."""
    logits = logit_scale.exp() * image @ text_emb.T
    same = (categories[:, None] == categories[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)  # symmetric: a class's count is the same by row and by column
    i2t = -(targets * logits.log_softmax(1)).sum(1).mean()
    t2i = -(targets * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def _optimizer(model, opts: TeacherOptions, extra: Sequence[torch.nn.Parameter] = ()) -> torch.optim.Optimizer:
    decay, rest = [], list(extra)  # extra: token rows (embeddings: no weight decay)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name or "embedding" in name
        (rest if no_decay else decay).append(p)
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr(opts: TeacherOptions, progress: float) -> float:
    warm = min(1.0, progress / opts.warmup) if opts.warmup > 0 else 1.0
    return opts.lr * warm * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(model, opts: TeacherOptions) -> dict:
    """Train ``model`` in place within the budget; returns training figures (losses, steps, seconds)."""
    from pipeline.clip import text

    torch.set_num_threads(max(1, opts.threads - opts.workers))
    model.train()
    model.token_embedding.weight.requires_grad_(False)
    rows = TokenRows(model.token_embedding, caption_token_ids(opts)) if opts.token_rows == "caption" else None
    optimizer = _optimizer(model, opts, [rows.rows] if rows is not None else [])
    loader = DataLoader(
        CaptionBatches(opts),
        batch_size=None,
        num_workers=opts.workers,
        prefetch_factor=4 if opts.workers else None,
    )
    losses: list[float] = []
    total = opts.steps if opts.steps is not None else int(math.ceil(opts.seconds))
    bar = tqdm(total=total, desc="teacher", unit="step" if opts.steps is not None else "s", mininterval=2.0)
    start = time.perf_counter()
    progress, shown = 0.0, 0
    for step, (images, tokens, categories) in enumerate(loader):
        elapsed = time.perf_counter() - start
        progress = max(
            step / opts.steps if opts.steps is not None else 0.0,
            elapsed / opts.seconds if opts.seconds is not None else 0.0,
        )
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr(opts, progress)
        image_emb = F.normalize(encode_image_downsampled(model.visual, images, opts.downsample), dim=-1)
        text_emb = text.encode_tokens(model, tokens, rows.embed(tokens) if rows is not None else None)
        loss = contrastive_loss(image_emb, text_emb, categories, model.logit_scale)
        if not torch.isfinite(loss):
            raise TeacherError(f"teacher: loss is {loss.item()} at step {step} (lower --lr)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        losses.append(float(loss.item()))
        now = step + 1 if opts.steps is not None else int(time.perf_counter() - start)
        bar.update(max(0, min(now, total) - shown))
        shown = max(shown, min(now, total))
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
            log.debug("step %d: loss %.4f", step + 1, np.mean(losses[-50:]))
    bar.close()
    seconds = time.perf_counter() - start
    if rows is not None:
        rows.write_back()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    window = max(1, min(50, len(losses) // 10))
    figures = {
        "steps": len(losses),
        "seconds": round(seconds, 1),
        "samples": len(losses) * opts.batch_size,
        "rendered_crops": -(-len(losses) // opts.repeat) * opts.batch_size,
        "loss_first": float(np.mean(losses[:window])) if losses else None,
        "loss_last": float(np.mean(losses[-window:])) if losses else None,
        "loss_curve": [round(float(np.mean(losses[i : i + window])), 4) for i in range(0, len(losses), window)],
        "logit_scale": round(float(model.logit_scale.exp()), 3),
        "trained_token_rows": int(len(rows.ids)) if rows is not None else 0,
    }
    log.info(
        "teacher: %d steps (%d crops) in %.0f s, loss %.3f -> %.3f",
        figures["steps"],
        figures["samples"],
        seconds,
        figures["loss_first"] or float("nan"),
        figures["loss_last"] or float("nan"),
    )
    return figures


def save_checkpoint(model, path: str | Path) -> None:
    """The open_clip state dict as a plain dict of float32 CPU tensors (``weights_only`` loadable), atomically.

    Byte-reproducible: serialised in memory first (``torch.save`` to a file records the file's temporary name in
    the archive), so the same weights give the same file and the same ``clip_weights_hash`` downstream."""
    import io

    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic.atomic_path(path, suffix=Path(path).suffix) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


# ------------------------------------------------------------------------------------------------ zero-shot


def class_text_embeddings(model, classes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Unit-norm class embeddings ``[K, D]``: ``vild`` (mean over the 74 ViLD templates, renormalised, as the
    prompts stage builds them) and ``photo`` (``"a photo of a {name}"``)."""
    from pipeline import prompts
    from pipeline.clip import text

    return {
        "vild": prompts.vild_embeddings(model, list(classes), renormalize=True),
        "photo": text.encode_text(model, [PHOTO_TEMPLATE.format(c) for c in classes]),
    }


@torch.inference_mode()
def image_embeddings(model, crops: torch.Tensor) -> torch.Tensor:
    """``[N, 3, 224, 224]`` uint8 -> ``[N, D]`` unit-norm, the standard forward (as OAKE blocks)."""
    from pipeline.clip import vision

    if len(crops) == 0:
        return torch.zeros(0, model.visual.output_dim)
    return torch.cat(
        [
            vision.encode_standard(model.visual, normalize(crops[i : i + EVAL_BATCH]))
            for i in range(0, len(crops), EVAL_BATCH)
        ]
    )


def accuracy(emb: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor, novel_ids: set[int]) -> dict:
    """Generalized zero-shot accuracy: argmax cosine over ALL classes, split by the true class being base / novel."""
    pred = (emb @ classifier.T).argmax(1) if len(emb) else labels
    hit = (pred == labels).float()
    is_novel = torch.tensor([int(c) in novel_ids for c in labels.tolist()], dtype=torch.bool)

    def mean(mask: torch.Tensor) -> float | None:
        return round(float(hit[mask].mean()), 4) if bool(mask.any()) else None

    return {
        "base": mean(~is_novel),
        "novel": mean(is_novel),
        "all": mean(torch.ones_like(is_novel)),
        "n_base": int((~is_novel).sum()),
        "n_novel": int(is_novel.sum()),
    }


def similar_pairs(
    text_emb: torch.Tensor, image_emb: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], top: int = 8
) -> list[dict]:
    """The class pairs the teacher tells apart worst: cosine of their text embeddings and of their held-out image
    centroids (renormalised mean crop embedding), highest image cosine first. A pair near 1 on the image side is
    one the image tower does not separate (no student distilled from it can); near 1 on the text side only, one
    its text tower does not."""
    K = len(classes)
    centroids = torch.stack(
        [
            image_emb[labels == k].mean(0) if bool((labels == k).any()) else torch.zeros(image_emb.shape[1])
            for k in range(K)
        ]
    )
    image_cos = F.normalize(centroids, dim=-1) @ F.normalize(centroids, dim=-1).T
    text_cos = text_emb @ text_emb.T
    pairs = [
        {
            "classes": [classes[i], classes[j]],
            "image": round(float(image_cos[i, j]), 4),
            "text": round(float(text_cos[i, j]), 4),
        }
        for i in range(K)
        for j in range(i + 1, K)
    ]
    return sorted(pairs, key=lambda p: (-p["image"], -p["text"]))[:top]


def _context_key(factor: float) -> str:
    return f"context_{factor:g}x"


def zero_shot(model, opts: TeacherOptions, captions: Path | None = None) -> dict:
    """The teacher's zero-shot report (see the module docstring)."""
    from pipeline.clip import vision
    from pipeline.oake import objects as oake_objects

    classes = list(opts.classes)
    novel_ids = {i for i, c in enumerate(classes) if c in opts.novel}
    texts = class_text_embeddings(model, classes)
    crops, labels = caption_test_set(opts, captions)
    crop_emb = image_embeddings(model, crops)
    report: dict = {
        "chance": round(1.0 / len(classes), 4),
        "classifier": {
            "vild": "mean of the 74 ViLD templates over the class name, renormalised (the prompts stage's vild)",
            "photo": f"'{PHOTO_TEMPLATE}'",
        },
        "crops": {kind: accuracy(crop_emb, labels, t, novel_ids) for kind, t in texts.items()},
    }
    hits = ((crop_emb @ texts["vild"].T).argmax(1) == labels).float()
    report["per_class_crops_vild"] = {c: round(float(hits[labels == i].mean()), 4) for i, c in enumerate(classes)}
    report["similar_pairs"] = similar_pairs(texts["vild"], crop_emb, labels, classes)

    scenes = scene_objects(opts)
    scene_labels = torch.tensor([c for _, _, cats in scenes for c in cats], dtype=torch.int64)
    variants: dict[str, torch.Tensor] = {}
    for factor in opts.contexts:
        cut = [
            crop_uint8(np.asarray(img.crop(context_square(box, factor, *img.size))))
            for img, boxes, _ in scenes
            for box in boxes
        ]
        variants[_context_key(factor)] = image_embeddings(model, torch.stack(cut))
    if len(opts.contexts) > 1:
        mean = torch.stack([variants[_context_key(f)] for f in opts.contexts]).mean(0)
        variants["context_mean"] = F.normalize(mean, dim=-1)
    encoder = vision.ObjectAwareEncoder(model.visual)
    rows = []
    with torch.inference_mode():
        for img, boxes, _ in scenes:
            obj_crops, masks = oake_objects.object_inputs(img, boxes, encoder.grid)
            rows.append(encoder(normalize(obj_crops), masks))
    variants["oake_object"] = torch.cat(rows)
    report["scenes"] = {
        "images": len(scenes),
        "objects": len(scene_labels),
        "crops": {
            name: {kind: accuracy(emb, scene_labels, t, novel_ids) for kind, t in texts.items()}
            for name, emb in variants.items()
        },
        "how": "scene objects (demo_data.draw_image, split 'teacher', 256 x 256, 3-7 objects, no crowd) cut as "
        "squares of side factor x the box's long side, shifted inside; context_mean: the renormalised mean of the "
        "context embeddings; oake_object: OAKE's object-aware embedding of the adaptive square sqrt(8wh)",
    }
    return report


# ------------------------------------------------------------------------------------------------ stage


def run(opts: TeacherOptions, output: Path, zeroshot: Path, captions: Path | None = None) -> dict:
    """Train, write the checkpoint, reload it through :func:`pipeline.clip.load_clip`, evaluate, write the report."""
    from pipeline.clip import load_clip

    model = create_model(opts)
    counts = parameter_counts(model)
    log.info(
        "teacher %s: %.2fM parameters (visual %.2fM, text %.2fM of which token embedding %.2fM)",
        opts.model,
        counts["total"] / 1e6,
        counts["visual"] / 1e6,
        counts["text"] / 1e6,
        counts["token_embedding"] / 1e6,
    )
    figures = train(model, opts)
    save_checkpoint(model, output)
    loaded = load_clip(opts.model, str(output))
    start = time.perf_counter()
    report = zero_shot(loaded.model, opts, captions)
    vild = report["crops"]["vild"]
    log.info(
        "teacher zero-shot (vild, held-out crops): base %.3f, novel %.3f (chance %.3f) in %.0f s",
        vild["base"] or 0.0,
        vild["novel"] or 0.0,
        report["chance"],
        time.perf_counter() - start,
    )
    for name, acc in report["scenes"]["crops"].items():
        log.info(
            "teacher zero-shot (vild, scene %s): base %.3f, novel %.3f",
            name,
            acc["vild"]["base"] or 0.0,
            acc["vild"]["novel"] or 0.0,
        )
    result = {
        **loaded.provenance(),
        "classes": list(opts.classes),
        "base": list(opts.base),
        "novel": list(opts.novel),
        "seed": opts.seed,
        "parameters": counts,
        "training": {
            "budget_steps": opts.steps,
            "budget_seconds": opts.seconds,
            "batch_size": opts.batch_size,
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "warmup": opts.warmup,
            "repeat": opts.repeat,
            "downsample": opts.downsample,
            "threads": opts.threads,
            "token_rows": opts.token_rows,
            **figures,
        },
        "zero_shot": report,
    }
    atomic.write_json(zeroshot, result, compact=False)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.teacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = TeacherOptions
    p.add_argument("--classes", nargs="+", required=True, help="every class, base and novel (demo.classes)")
    p.add_argument("--novel", nargs="*", default=[], help="the novel class names (demo.novel); the rest are base")
    p.add_argument("--base", nargs="*", default=None, help="the base names (optional: checked against --novel)")
    p.add_argument("--model", default=TEACHER_MODEL, help="CLIP config to train (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (bit-reproducible budget)")
    p.add_argument("--seconds", type=float, default=None, help="training time budget (default 240 without --steps)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--repeat", type=int, default=d.repeat, help="steps per rendered batch (rotated / mirrored)")
    p.add_argument(
        "--downsample",
        type=int,
        default=d.downsample,
        help="train on 224/N px crops through the NxN-pooled patch kernel (exact, N^2 x cheaper patch embedding)",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads: 1 data worker + the rest for torch")
    p.add_argument(
        "--token-rows",
        choices=TOKEN_ROWS,
        default=d.token_rows,
        help="token-embedding rows to train: those of the caption vocabulary (default) or none",
    )
    p.add_argument("--eval-per-class", type=int, default=d.eval_per_class, help="held-out captioned crops per class")
    p.add_argument(
        "--captions-test",
        type=Path,
        default=None,
        help="the generator's held-out captions_test.json (default: draw --eval-per-class crops per class here)",
    )
    p.add_argument("--scenes", type=int, default=d.scenes, help="evaluation scenes")
    p.add_argument("--contexts", type=float, nargs="+", default=list(d.contexts), help="scene crop context factors")
    p.add_argument("--output", type=Path, required=True, help="the CLIP checkpoint (.pt)")
    p.add_argument("--zeroshot", type=Path, required=True, help="the zero-shot report (.json)")
    cli.add_log_argument(p)
    return p


def options_from_args(args: argparse.Namespace) -> TeacherOptions:
    if args.base is not None:
        rest = [c for c in args.classes if c not in args.novel]
        if sorted(args.base) != sorted(rest):
            raise TeacherError(f"teacher --base {args.base} is not --classes minus --novel {rest}")
    seconds = args.seconds if (args.seconds is not None or args.steps is not None) else 240.0
    return TeacherOptions(
        classes=tuple(args.classes),
        novel=tuple(args.novel),
        model=args.model,
        seed=args.seed,
        steps=args.steps,
        seconds=seconds,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        repeat=args.repeat,
        downsample=args.downsample,
        threads=args.threads,
        eval_per_class=args.eval_per_class,
        scenes=args.scenes,
        contexts=tuple(args.contexts),
        token_rows=args.token_rows,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    opts = options_from_args(args)
    opts.specs  # noqa: B018 - parse every name now: a bad one fails before training
    return run(opts, args.output, args.zeroshot, args.captions_test)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
