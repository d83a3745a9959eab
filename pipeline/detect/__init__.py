"""Stage ``detect``: a trained detector with any vocabulary on any images -> detections with names, one rendered
picture per image, and an index page.

Command::

    python -m pipeline.detect --checkpoint results/train/E/final.pth --images DIR_OR_FILE [...]
        --vocabulary "red star, a striped shape" (or a text file, one name per line)
        --clip-model M --clip-weights W --out-dir results/detect/E [--score-thr 0.3] [--max-drawn 20]

Vocabulary
    Every name, one the detector was trained on or one it never saw, is embedded the same way: with the
    experiment's CLIP and the recipe of each prompt file its classifiers were trained with (``final.pth`` stores
    them, :func:`pipeline.detect.vocabulary.prompt_rows`): ``vild`` files with the 74 ViLD templates (and their
    renormalisation), ``ml`` files with their learned context. These rows replace the class embeddings of every
    text classifier (bbox head, object head of the ensemble, block and global heads) for the run. The CLIP given
    must be the one the prompt files recorded (architecture and weights hash), else the stage stops naming both.
    Names among the detector's *base* training classes count as base in the inference ensemble (exponent
    ``lambda_base`` of the bbox head, 2/3), every other name as novel (``lambda_novel``, 1/3): a novel training
    class and a name in no class list are treated alike. The output's ``category_id`` is the name's position in
    the vocabulary as given (0-based).

Images
    Files and folders (every ``.jpg``/``.jpeg``/``.png``/``.bmp``/``.webp`` file in it, sorted). An image's id is
    its file stem when every stem is a distinct number (COCO and demo file names: ``000000000129.jpg`` -> 129),
    else its 1-based position in the sorted list.

Outputs (``--out-dir``, each file written atomically)
    ``detections.json``: COCO result format (:mod:`pipeline.formats.detections`) with ``category_name`` and
    ``file_name`` in every record, scores above ``--score-thr``, at most the config's ``max_per_img`` per image;
    ``pictures/<stem>.jpg``: the image, same size, with its ``--max-drawn`` best boxes, names and scores
    (:func:`pipeline.core.render.draw_detections`); ``index.html``: the vocabulary (base / novel, colour, count)
    and every picture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.core import atomic, images
from pipeline.core.device import resolve_device
from pipeline.core.images import ON_BAD_IMAGE
from pipeline.core.options import Command, option
from pipeline.core.progress import track
from pipeline.detect.pages import index_html, write_picture
from pipeline.detect.vocabulary import image_items, parse_vocabulary, prompt_rows
from pipeline.formats.detections import detection_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectOptions:
    """detect: a trained detector, any vocabulary, any images."""

    checkpoint: Path = option(help="final.pth of pipeline.train (input)")
    images: tuple[Path, ...] = option(help="image files and/or folders (inputs)", nargs="+")
    vocabulary: str = option(help="class names: 'name, name, ...' or a text file with one name per line")
    clip_model: str = option(help="the experiment's CLIP architecture (clip.model)")
    clip_weights: str = option(help="the experiment's CLIP weights or 'random' (clip.weights)")
    out_dir: Path = option(help="detections.json, pictures/, index.html (outputs)")
    score_thr: float = option(0.3, help="keep detections scoring above this")
    max_drawn: int = option(20, help="boxes drawn per picture, best first")
    max_images: int | None = option(None, help="the first N image files in path order (none: all)")
    device: str = option("auto", help="auto (the first GPU if any, else cpu) or a torch device name")
    on_bad_image: str = option(
        "error", help="an unreadable image stops the job (error) or is left out (skip)", choices=ON_BAD_IMAGE
    )


def run(opts: DetectOptions) -> list[dict]:
    """Detect, render and index; returns the detections (as written)."""
    from mmengine.config import Config

    from pipeline.models.clip import load_clip
    from pipeline.models.detector.checkpoint import read_checkpoint
    from pipeline.models.detector.inference import Vocabulary, base_first, detect_image, load_detector, trained_classes

    names = parse_vocabulary(opts.vocabulary)
    items = image_items(opts.images, opts.max_images)
    device = str(resolve_device(opts.device))
    meta = read_checkpoint(opts.checkpoint)["meta"]
    trained, num_base = trained_classes(Config(meta["config"]))
    ordered, num_vocab_base, position = base_first(names, trained[:num_base])
    clip = load_clip(opts.clip_model, opts.clip_weights, device=device)

    def rows(stored: dict) -> dict:
        return prompt_rows(stored, ordered, clip, opts.checkpoint)

    model, cfg, meta = load_detector(opts.checkpoint, device, Vocabulary(tuple(ordered), num_vocab_base, rows))
    model.roi_head.test_cfg["score_thr"] = opts.score_thr
    policy = images.ImagePolicy(opts.on_bad_image)
    pipeline = images.mmcv_test_pipeline(cfg.test_pipeline, policy)
    detections, pictures = [], []
    with torch.inference_mode():
        for item in track(items, f"detect {meta['experiment']}", unit="img", logger=log):
            data = pipeline(item)
            if data is None:
                continue
            out = detect_image(model, data)[0]
            found = []
            for box, score, label in zip(out.bboxes.tolist(), out.scores.tolist(), out.labels.tolist(), strict=True):
                det = detection_record(item.image_id, box, score, position[label])
                det.update(category_name=names[det["category_id"]], file_name=item.path.name)
                found.append(det)
            detections += found
            pictures.append(write_picture(item, found, opts.out_dir / "pictures", opts.max_drawn))
    atomic.write_json(opts.out_dir / "detections.json", detections)
    base = set(trained[:num_base])
    page = index_html(meta["experiment"], names, base, detections, pictures, opts.score_thr)
    with atomic.atomic_path(opts.out_dir / "index.html", suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info(
        "%d detections of %d names (%d base) on %d images (%d skipped) -> %s",
        len(detections),
        len(names),
        num_vocab_base,
        len(pictures),
        len(policy.skipped),
        opts.out_dir,
    )
    return detections


COMMAND = Command("python -m pipeline.detect", __doc__, DetectOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
