"""The teacher's options: :class:`TeacherOptions` (checked on construction, :class:`TeacherError`).

Every other module of the teacher takes a :class:`TeacherOptions`; ``opts.specs`` parses the class names
(:class:`~pipeline.world.grammar.ClassSpec`), ``opts.base`` is the classes minus the novel ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.world.captions import CaptionOptions
from pipeline.world.grammar import ClassSpec

TEACHER_MODEL = "OADP-Teacher-ViT-4H"
TOKEN_ROWS = ("caption", "frozen")


class TeacherError(ValueError):
    """Bad teacher options (the message names the option)."""


@dataclass(frozen=True)
class TeacherOptions:
    """Everything the teacher's training and evaluation depend on.

    Attributes:
        classes: every class name (``"<colour> [<texture>] <shape>"``), base and novel.
        novel: the novel names (the rest are base).
        model: the CLIP config (:mod:`pipeline.models.clip.configs`).
        seed: model initialisation, captioned crops, augmentation and evaluation scenes.
        steps, seconds: the budget; training stops at whichever comes first (at least one is set).
        batch_size: captioned crops per step.
        lr, weight_decay, warmup: AdamW peak learning rate, decoupled weight decay (matrices only), warm-up
            fraction of the budget.
        repeat: steps per rendered batch (each under another rotation / mirror).
        downsample: train on ``224 / downsample`` px crops through the block-pooled patch kernel (package doc).
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
    captions: CaptionOptions = CaptionOptions()
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
    def specs(self) -> tuple[ClassSpec, ...]:
        return tuple(ClassSpec.parse(c) for c in self.classes)

    @property
    def base(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c not in self.novel)

    @property
    def workers(self) -> int:
        return 1 if self.threads >= 2 else 0
