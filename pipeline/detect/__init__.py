"""Stage ``detect``: a trained detector with any vocabulary on any images -> detections with names, one rendered
picture per image, and an index page.

Command::

    python -m pipeline.detect CHECKPOINT IMAGE_OR_FOLDER [...] --vocabulary "red star, a striped shape"
        [--vocabulary-file names.txt (in place of --vocabulary)] [--out-dir detections/<experiment>]
        [--clip-model M --clip-weights W (default: the CLIP the checkpoint records)] [--score-thr 0.3]
        [--max-drawn 20] [--on-bad-image error|skip] [--max-image-pixels N]

Python::

    from pipeline.detect import Detector
    detector = Detector.from_checkpoint("results/train/oadp_demo/final.pth")
    detections = detector(["some.png"], ["red star", "dog"])  # records as in detections.json

Vocabulary
    ``--vocabulary "a, b"`` (names separated by commas; ``--vocabulary=...`` when the first begins with ``-``) or
    ``--vocabulary-file`` (one name per line, ``#`` comments). Every name, one the detector was trained on or one
    it never saw, is embedded the same way: with the experiment's CLIP and the recipe of each prompt file its
    classifiers were trained with (``final.pth`` stores them, :func:`pipeline.detect.vocabulary.prompt_rows`):
    ``vild`` files with the 74 ViLD templates (and their renormalisation), ``ml`` files with their learned context.
    These rows replace the class embeddings of every text classifier (bbox head, object head of the ensemble, block
    and global heads) for the run. The CLIP is the one the prompt files recorded (architecture and weights path,
    :func:`pipeline.detect.vocabulary.recorded_clip`); ``--clip-model`` / ``--clip-weights`` override it, and a CLIP
    whose weights hash differs from the recorded one is refused, naming both. Names among the detector's *base*
    training classes count as base in the inference ensemble (exponent ``lambda_base`` of the bbox head, 2/3), every
    other name as novel (``lambda_novel``, 1/3): a novel training class and a name in no class list are treated
    alike. The output's ``category_id`` is the name's position in the vocabulary as given (0-based).

Images
    Files and folders (every ``.jpg``/``.jpeg``/``.png``/``.bmp``/``.webp`` file in it and its subfolders, hidden
    ones left out, sorted), decoded by :func:`pipeline.core.images.decode` (EXIF orientation applied: the detector
    and the picture see the same upright image). An image's id is its file stem when every stem is a distinct
    number (COCO and demo file names: ``000000000129.jpg`` -> 129), else its 1-based position in the sorted list.
    An unreadable image stops the run (``--on-bad-image error``) or is left out (``skip``), named either way.

Outputs (``--out-dir``, default ``detections/<experiment>``; each file written atomically)
    ``detections.json``: COCO result format (:mod:`pipeline.formats.detections`) with ``category_name`` and
    ``file_name`` in every record, scores above ``--score-thr``, at most the config's ``max_per_img`` per image;
    ``pictures/<stem>.jpg``: the image (enlarged when small) with its ``--max-drawn`` best objects, one name each
    (:mod:`pipeline.detect.pages`); ``index.html``: the vocabulary (base / novel, colour, count, and the best score
    below ``--score-thr`` of a name without detections) and every picture with its objects' runners-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic, images
from pipeline.core.images import ON_BAD_IMAGE, ImageItem, max_pixels_option
from pipeline.core.options import Command, option
from pipeline.detect.vocabulary import image_items, prompt_rows, recorded_clip, vocabulary_names

log = logging.getLogger(__name__)


class Detector:
    """A trained detector (``final.pth`` of ``pipeline.train``) that finds the names of any vocabulary.

    ``Detector.from_checkpoint(path)(images, names)`` returns the detections as ``detections.json`` holds them
    (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` in image pixels, ``score``, ``category_name``,
    ``file_name``), scores above ``score_thr``, images in path order.

    Args:
        checkpoint: ``final.pth``.
        clip_model, clip_weights: the CLIP embedding the names (default: the one the checkpoint's prompts record).
        device: ``auto`` (the first GPU if any, else cpu) or a torch device name.
        score_thr: detections scoring above this are returned.
        on_bad_image: an unreadable image raises (``error``) or is left out with a warning (``skip``).
        max_image_pixels: the pixel limit checked on an image's header before decoding.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        clip_model: str | None = None,
        clip_weights: str | None = None,
        device: str = "auto",
        score_thr: float = 0.3,
        on_bad_image: str = "error",
        max_image_pixels: int | None = images.MAX_IMAGE_PIXELS,
    ) -> None:
        from mmengine.config import Config

        from pipeline.core.device import resolve_device
        from pipeline.models.detector.checkpoint import read_checkpoint
        from pipeline.models.detector.inference import trained_classes

        self.checkpoint, self.score_thr = Path(checkpoint), score_thr
        self.device = str(resolve_device(device))
        self.policy = images.ImagePolicy(on_bad_image, max_image_pixels)
        self.meta = read_checkpoint(self.checkpoint)["meta"]
        self.experiment = str(self.meta.get("experiment") or self.checkpoint.parent.name)
        trained, num_base = trained_classes(Config(self.meta["config"]))
        self.base = tuple(trained[:num_base])
        if clip_model is None or clip_weights is None:
            model, weights = recorded_clip(self.meta.get("prompts") or {}, self.checkpoint)
            clip_model, clip_weights = clip_model or model, clip_weights or weights
        self.clip_model, self.clip_weights = clip_model, clip_weights
        self._clip = None
        self._model: tuple[tuple[str, ...], object, object, list[int]] | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, **kwargs) -> Detector:
        """The detector of ``final.pth`` (keyword arguments: see the class)."""
        return cls(checkpoint, **kwargs)

    def __call__(self, paths: str | Path | Sequence[str | Path], names: str | Sequence[str]) -> list[dict]:
        """Detections of ``names`` (a list, or ``"a, b"``) on the image files and folders ``paths``."""
        paths = [paths] if isinstance(paths, str | Path) else list(paths)
        found: list[dict] = []
        for _, _, dets in self.detect(image_items(paths), vocabulary_names(names), self.score_thr):
            found += dets
        return found

    def _loaded(self, names: Sequence[str]):
        """The model scoring ``names`` (built once per vocabulary) and ``position`` (its class order -> ``names``)."""
        from pipeline.models.clip import load_clip
        from pipeline.models.detector.inference import Vocabulary, base_first, load_detector

        if self._model is None or self._model[0] != tuple(names):
            if self._clip is None:
                self._clip = load_clip(self.clip_model, self.clip_weights, device=self.device)
            ordered, num_vocab_base, position = base_first(list(names), self.base)

            def rows(stored):
                return prompt_rows(stored, ordered, self._clip, self.checkpoint)

            vocab = Vocabulary(tuple(ordered), num_vocab_base, rows)
            model, cfg, _ = load_detector(self.checkpoint, self.device, vocab)
            self._model = (tuple(names), model, cfg, position)
        return self._model[1:]

    def detect(
        self, items: Sequence[ImageItem], names: Sequence[str], score_thr: float
    ) -> Iterator[tuple[ImageItem, object, list[dict]]]:
        """Per readable image of ``items`` (in order): the item, its decoded RGB ``PIL.Image`` (what the detector
        saw) and its detection records scoring above ``score_thr``."""
        from pipeline.formats.detections import detection_record
        from pipeline.models.detector.inference import predict

        model, cfg, position = self._loaded(names)
        model.roi_head.test_cfg["score_thr"] = score_thr
        for pred in predict(model, cfg, items, self.policy, f"detect {self.experiment}", log):
            out = pred.instances
            found = []
            for box, score, label in zip(out.bboxes.tolist(), out.scores.tolist(), out.labels.tolist(), strict=True):
                det = detection_record(pred.item.image_id, box, score, position[label])
                det.update(category_name=names[det["category_id"]], file_name=pred.item.path.name)
                found.append(det)
            yield pred.item, pred.image, found


@dataclass(frozen=True)
class DetectOptions:
    """detect: a trained detector, any vocabulary, any images."""

    checkpoint: Path = option(help="final.pth of pipeline.train (input)", flag="CHECKPOINT")
    images: tuple[Path, ...] = option(
        help="image files and/or folders, read recursively (inputs)", flag="IMAGES", nargs="+"
    )
    vocabulary: str | None = option(None, help="class names 'name, name, ...' (or --vocabulary-file)")
    vocabulary_file: Path | None = option(None, help="a text file of class names, one per line, # comments (input)")
    clip_model: str | None = option(None, help="the CLIP architecture (none: the one the checkpoint records)")
    clip_weights: str | None = option(None, help="the CLIP weights or 'random' (none: the ones the checkpoint records)")
    out_dir: Path | None = option(
        None, help="detections.json, pictures/, index.html (outputs; none: detections/<experiment>)"
    )
    score_thr: float = option(0.3, help="keep detections scoring above this")
    max_drawn: int = option(20, help="boxes drawn per picture, best first")
    max_images: int | None = option(None, help="the first N image files in path order (none: all)")
    device: str = option("auto", help="auto (the first GPU if any, else cpu) or a torch device name")
    on_bad_image: str = option(
        "error", help="an unreadable image stops the job (error) or is left out (skip)", choices=ON_BAD_IMAGE
    )
    max_image_pixels: int | None = max_pixels_option()


def run(opts: DetectOptions) -> list[dict]:
    """Detect, render and index; returns the detections (as written)."""
    import torch

    from pipeline.detect.pages import SCORE_FLOOR, ScoreBook, index_html, write_picture

    names = vocabulary_names(opts.vocabulary, opts.vocabulary_file)
    items = image_items(opts.images, opts.max_images)
    detector = Detector(
        opts.checkpoint,
        clip_model=opts.clip_model,
        clip_weights=opts.clip_weights,
        device=opts.device,
        score_thr=opts.score_thr,
        on_bad_image=opts.on_bad_image,
        max_image_pixels=opts.max_image_pixels,
    )
    out_dir = opts.out_dir or Path("detections") / detector.experiment
    book = ScoreBook(opts.score_thr)
    detections, pictures = [], []
    with torch.inference_mode():
        # boxes down to SCORE_FLOOR are scored so that the page can give each name's best score below the threshold
        for item, image, found in detector.detect(items, names, min(SCORE_FLOOR, opts.score_thr)):
            found = book.keep(found)
            detections += found
            pictures.append(write_picture(item, found, out_dir / "pictures", opts.max_drawn, image))
    atomic.write_json(out_dir / "detections.json", detections)
    page = index_html(
        detector.experiment, names, set(detector.base), detections, pictures, opts.score_thr, book.best_below
    )
    with atomic.atomic_path(out_dir / "index.html", suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info(
        "%d detections of %d names (%d base) on %d images (%d skipped) -> %s",
        len(detections),
        len(names),
        len(set(names) & set(detector.base)),
        len(pictures),
        len(detector.policy.skipped),
        out_dir,
    )
    return detections


COMMAND = Command("python -m pipeline.detect", __doc__, DetectOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
