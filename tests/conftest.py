"""Shared fixtures: the real COCO and LVIS category metadata (tests/data, with its licence note) and small generated
annotation files; in CI (``CI=true``) a skipped preset or SLURM test fails the run unless no GPU was the reason."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
#: the tests that a CI run must not skip (module files, markers): a skip there means nothing was checked
MUST_RUN_FILES = ("test_presets_e2e.py", "test_slurm.py")
MUST_RUN_MARKERS = ("presets", "slurm")
#: the one acceptable reason to skip them: the machine has no GPU (a skip reason naming it)
NO_GPU_REASONS = ("no gpu", "needs cuda", "needs a gpu", "no cuda")


@pytest.fixture(scope="session")
def coco_categories() -> list[dict]:
    return json.loads((DATA / "coco_categories.json").read_text())


@pytest.fixture(scope="session")
def lvis_categories() -> list[dict]:
    return json.loads((DATA / "lvis_v1_categories.json").read_text())


def must_run(nodeid: str, keywords) -> bool:
    """A preset or SLURM test (by module file or marker)."""
    return Path(nodeid.split("::")[0]).name in MUST_RUN_FILES or any(m in keywords for m in MUST_RUN_MARKERS)


def skip_reason(report) -> str:
    """The reason of a skipped test report (``longrepr`` is ``(file, line, "Skipped: reason")``)."""
    longrepr = report.longrepr
    return str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr)


_FORBIDDEN_SKIPS: list[tuple[str, str]] = []


def pytest_runtest_logreport(report) -> None:
    if os.environ.get("CI", "").lower() != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if must_run(report.nodeid, report.keywords) and not any(r in reason.lower() for r in NO_GPU_REASONS):
        _FORBIDDEN_SKIPS.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus) -> None:
    if _FORBIDDEN_SKIPS and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _FORBIDDEN_SKIPS:
        terminalreporter.section("skips that fail a CI run (CI=true)", red=True)
        for nodeid, reason in _FORBIDDEN_SKIPS:
            terminalreporter.line(f"{nodeid}: {reason} (only a missing GPU may skip a preset or SLURM test)")


def check_metrics(metrics: dict, keys: tuple[str, ...], where: str) -> None:
    """Each of ``keys`` is a number in [0, 100] in ``metrics``: an evaluation that found no ground truth for a group
    (``None``) fails, as does a value out of range (``where`` names the run)."""
    missing = sorted(set(keys) - set(metrics))
    assert not missing, f"{where}: metrics without {missing}"
    bad = {k: metrics[k] for k in keys if not isinstance(metrics[k], int | float) or not 0 <= metrics[k] <= 100}
    assert not bad, f"{where}: metrics that are not numbers in [0, 100]: {bad}"


def check_final(path: Path, experiment: str) -> None:
    """``final.pth`` of ``experiment``: its state dict loads strictly into the model its resolved config builds
    (every tensor present, none extra, same shapes), and every floating tensor is finite."""
    import torch

    from pipeline.models.detector.inference import load_detector

    model, _, meta = load_detector(path)  # load_state_dict(strict=True) inside
    assert meta["experiment"] == experiment, (path, meta["experiment"])
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert state.keys() == model.state_dict().keys(), path
    bad = [
        k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    assert not bad, f"{path}: tensors that are not finite: {bad[:10]}"


def make_coco(categories: list[dict], num_images: int, seed: int = 0, per_image: int = 4) -> dict:
    """A COCO-format dict over ``categories`` with random boxes (no image files).

    Image 1 has only a crowd annotation of category 1; image 2 has no annotation at all; image 3 only
    annotations of the last category in ``categories``; the others have ``per_image`` random annotations.
    """
    rng = np.random.default_rng(seed)
    ids = [c["id"] for c in categories]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, num_images + 1)]
    anns: list[dict] = []

    def add(image_id: int, cat: int, crowd: int = 0) -> None:
        x, y = rng.uniform(0, 500, 2)
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": int(cat),
                "bbox": [round(float(x), 1), round(float(y), 1), 40.0, 30.0],
                "area": 1200.0,
                "segmentation": [[x, y, x + 40, y, x + 40, y + 30]],
                "iscrowd": crowd,
            }
        )

    add(1, ids[0], crowd=1)
    add(3, ids[-1])
    for image_id in range(4, num_images + 1):
        for cat in rng.choice(ids, size=per_image):
            add(image_id, cat)
    return {
        "info": {"x": 1},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [dict(c) for c in categories],
    }


def make_lvis(categories: list[dict], num_images: int, seed: int = 0, per_image: int = 6) -> dict:
    """An LVIS-format dict over ``categories`` (no crowd), with neg / not-exhaustive id lists."""
    data = make_coco(categories, num_images, seed, per_image)
    rng = np.random.default_rng(seed + 1)
    ids = [c["id"] for c in categories]
    for a in data["annotations"]:
        a.pop("iscrowd")
    for im in data["images"]:
        im["coco_url"] = f"http://images.cocodataset.org/train2017/{im.pop('file_name')}"
        present = sorted({a["category_id"] for a in data["annotations"] if a["image_id"] == im["id"]})
        im["neg_category_ids"] = sorted(int(c) for c in rng.choice(ids, 3, replace=False) if c not in present)
        im["not_exhaustive_category_ids"] = present[:1]
    del data["licenses"]
    return data


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def snakemake_bin() -> str:
    exe = shutil.which("snakemake", path=str(Path(os.sys.executable).parent)) or shutil.which("snakemake")
    if exe is None:
        pytest.skip("snakemake is not installed")
    return exe


DEMO4 = ("red circle", "blue square", "green star", "red star")  # the last one is novel


def make_demo_split(tmp_path: Path, num_train: int, num_val: int) -> Path:
    """A 4-class demo dataset (256 px) and its remapped files ``{split}.{all,base}.json`` in ``tmp_path``
    (base: the first three classes); returns the demo folder."""
    from pipeline import annotations, demo_data

    demo = tmp_path / "demo"
    opts = demo_data.DemoOptions(out_dir=demo, classes=DEMO4, num_train=num_train, num_val=num_val, sizes=((256, 256),))
    demo_data.run(opts)
    for split in ("train", "val"):
        annotations.main(
            [
                "demo",
                "--input",
                str(demo / f"annotations/instances_{split}.json"),
                "--out-all",
                str(tmp_path / f"{split}.all.json"),
                "--out-base",
                str(tmp_path / f"{split}.base.json"),
                "--base",
                *DEMO4[:3],
                "--novel",
                DEMO4[3],
            ]
        )
    return demo


TINY = "OADP-Tiny-ViT-32"


def tiny_clip_args(annotations: Path, images: Path) -> list[str]:
    """Extractor arguments for the seeded random tiny CLIP on CPU, images decoded in the main process."""
    return [
        "--annotations",
        str(annotations),
        "--images",
        str(images),
        "--model",
        TINY,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--workers",
        "0",
    ]


def gt_proposals(annotations: Path, out: Path, extra_box: list[float] | None = None) -> dict[int, np.ndarray]:
    """Write a proposals file whose boxes are each image's ground truth (xyxy, score 1), optionally plus one
    ``extra_box``; returns the ground-truth boxes per image id."""
    from pipeline.formats import proposal_file

    data = json.loads(Path(annotations).read_text())
    ids = sorted(im["id"] for im in data["images"])
    gt = {
        i: [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in data["annotations"] if a["image_id"] == i)]
        for i in ids
    }
    boxes = [np.array(gt[i] + ([extra_box] if extra_box else []), np.float32).reshape(-1, 4) for i in ids]
    proposal_file.write(out, ids, boxes, [np.ones(len(b)) for b in boxes])
    return {i: np.array(gt[i], np.float32).reshape(-1, 4) for i in ids}


def extract_caches(annotations: Path, images: Path, out_dir: Path, proposals: Path | None = None) -> dict[str, Path]:
    """OAKE globals, blocks and (with ``proposals``) objects of every image, one shard each, tiny CLIP."""
    from pipeline.oake import blocks, objects
    from pipeline.oake import globals as oake_globals

    common = tiny_clip_args(annotations, images)
    paths = {"globals": out_dir / "g.h5", "blocks": out_dir / "b.h5"}
    oake_globals.main([*common, "--output", str(paths["globals"])])
    blocks.main([*common, "--output", str(paths["blocks"])])
    if proposals is not None:
        paths["objects"] = out_dir / "o.h5"
        objects.main([*common, "--output", str(paths["objects"]), "--proposals", str(proposals)])
    return paths


# A hand-made custom dataset (dataset: custom): odd category ids and names, nested image folders, crowd boxes in
# one file, segmentation and area in some annotations only. With novel ["étoile rouge"] the remapped ids are
# blue-square 0, GREEN STAR 1, Red Circle 2 (bases in id order 10 < 31 < 1000007), étoile rouge 3.
CUSTOM_CATEGORIES = [
    {"id": 66, "name": "étoile rouge"},
    {"id": 1000007, "name": "Red Circle"},
    {"id": 10, "name": "blue-square"},
    {"id": 31, "name": "GREEN STAR"},
]


def custom_dataset_dicts() -> dict[str, dict]:
    """``{"train": ..., "val": ...}`` COCO dicts of the hand-made custom dataset (see CUSTOM_CATEGORIES)."""
    train = {
        "images": [
            {"id": 5000001, "file_name": "shelf-1/a.jpg", "width": 100, "height": 80},
            {"id": 42, "file_name": "shelf 2/deep/b.jpg", "width": 64, "height": 64},
            {"id": 7, "file_name": "c.jpg", "width": 50, "height": 50},
        ],
        "annotations": [
            {"id": 900, "image_id": 5000001, "category_id": 1000007, "bbox": [10, 10, 20, 20]},
            {"id": 901, "image_id": 5000001, "category_id": 66, "bbox": [50, 30, 30, 40]},
            {
                "id": 902,
                "image_id": 42,
                "category_id": 10,
                "bbox": [0, 0, 64, 64],
                "iscrowd": 1,
                "area": 4096.0,
                "segmentation": {"counts": [0, 4096], "size": [64, 64]},
            },
            {"id": 903, "image_id": 42, "category_id": 31, "bbox": [5.5, 6, 10, 12], "area": 120.0},
        ],
        "categories": [dict(c) for c in CUSTOM_CATEGORIES],
    }
    val = {
        "images": [
            {"id": 8, "file_name": "v/x.jpg", "width": 60, "height": 40},
            {"id": 9, "file_name": "y.jpg", "width": 60, "height": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 8, "category_id": 66, "bbox": [1, 1, 10, 10], "iscrowd": 0, "area": 100.0},
            {"id": 2, "image_id": 8, "category_id": 10, "bbox": [20, 5, 30, 30], "iscrowd": 0, "area": 900.0},
            {"id": 3, "image_id": 9, "category_id": 1000007, "bbox": [0, 0, 5, 5], "iscrowd": 1, "area": 25.0},
        ],
        "categories": [dict(c) for c in reversed(CUSTOM_CATEGORIES)],
    }
    return {"train": train, "val": val}


def write_custom_dataset(root: Path, data: dict[str, dict] | None = None) -> dict[str, str]:
    """Write ``data`` (default :func:`custom_dataset_dicts`) under ``root``: ``{split}.json`` and an empty file
    for every image under ``images/{split}/`` (the checks look files up, never read them); returns the paths as
    the ``custom`` config block's keys (without ``novel``)."""
    data = data or custom_dataset_dicts()
    paths = {}
    for split, coco in data.items():
        paths[f"{split}_annotations"] = str(write_json(root / f"{split}.json", coco))
        paths[f"{split}_images"] = str(root / "images" / split)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for im in coco["images"]:
            path = root / "images" / split / im["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return paths
