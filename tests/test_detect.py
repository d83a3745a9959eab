"""pipeline.detect: a trained detector with any vocabulary. With the training vocabulary it gives what predict gives,
a reordered vocabulary relabels the same detections, pictures are the images enlarged to a readable size and upright;
the vocabulary, image listing, rendering and learned-context helpers it rests on; the README's Python example."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import DEMO4, REPO, TINY, make_demo_split


def _checkpoint(tmp_path: Path, experiment: str = "vild_demo") -> Path:
    """A demo split (2 val images) and ``tmp_path/final.pth`` of an untrained, seeded detector whose classifiers
    read a vild prompt file of the tiny random CLIP, saved as ``pipeline.train fit`` saves it."""
    from mmdet.registry import MODELS

    from pipeline import prompts, train
    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import detector_config

    demo = make_demo_split(tmp_path, num_train=1, num_val=2)
    vild = tmp_path / "vild.pth"
    prompts.main(
        ["vild", "--names-from", str(tmp_path / "train.all.json"), "--model", TINY, "--weights", "random"]
        + ["--device", "cpu", "--output", str(vild)]
    )
    register_modules()
    cfg = detector_config(experiment, names=list(DEMO4), num_base=3, prompts={"vild": str(vild)})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = {"experiment": experiment, "argv": "", "config": cfg.to_dict(), "prompts": train.stored_prompts(cfg)}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp_path / "final.pth")
    return demo


def _detect(
    tmp_path: Path, demo: Path, vocabulary: str | None, out: str, *extra: str, images: Path | None = None
) -> list:
    """``python -m pipeline.detect`` with the names ``vocabulary`` (``"a, b"``; ``None``: ``extra`` gives them)."""
    from pipeline import detect

    names = [] if vocabulary is None else [f"--vocabulary={vocabulary}"]
    detect.main(
        [str(tmp_path / "final.pth"), str(images or demo / "images/val"), *names,
         "--clip-model", TINY, "--clip-weights", "random", "--device", "cpu", "--score-thr", "0.3",
         "--out-dir", str(tmp_path / out), *extra]
    )  # fmt: skip
    return json.loads((tmp_path / out / "detections.json").read_text())


def _key(d: dict, name: str | int) -> tuple:
    return (d["image_id"], name, tuple(d["bbox"]))


def _assert_same(a: dict[tuple, float], b: dict[tuple, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


@pytest.mark.slow
def test_detect_with_the_training_vocabulary_is_predict_and_reordering_relabels(tmp_path):
    """One predict loop: ``train predict`` and ``detect`` give the same detections, each stage's progress lines
    carry its own name."""
    from pipeline import train
    from pipeline.detect.pages import PICTURE_MIN_SIDE

    demo = _checkpoint(tmp_path)
    train.main(
        ["--log", str(tmp_path / "predict.log"), "predict", "--checkpoint", str(tmp_path / "final.pth"),
         "--annotations", str(tmp_path / "val.all.json"), "--images", str(demo / "images/val"),
         "--output", str(tmp_path / "predict.json"), "--device", "cpu", "--score-thr", "0.3"]
    )  # fmt: skip
    predicted = json.loads((tmp_path / "predict.json").read_text())
    assert predicted, "the untrained detector should score some boxes above 0.3"
    progress = [line for line in (tmp_path / "predict.log").read_text().splitlines() if " img (" in line]
    assert progress and all("pipeline.train: train predict vild_demo: " in line for line in progress)
    same = _detect(tmp_path, demo, ", ".join(DEMO4), "same", "--log", str(tmp_path / "detect.log"))
    progress = [line for line in (tmp_path / "detect.log").read_text().splitlines() if " img (" in line]
    assert progress and all("pipeline.detect: detect vild_demo: " in line for line in progress)
    assert [d["category_name"] for d in same] == [DEMO4[d["category_id"]] for d in same]
    _assert_same({_key(d, d["category_id"]): d["score"] for d in same},
                 {_key(d, d["category_id"]): d["score"] for d in predicted})  # fmt: skip

    reordered = list(reversed(DEMO4))  # bases no longer first: the ensemble still treats them as base
    other = _detect(tmp_path, demo, ", ".join(reordered), "reordered")
    assert [d["category_name"] for d in other] == [reordered[d["category_id"]] for d in other]
    _assert_same({_key(d, d["category_name"]): d["score"] for d in other},
                 {_key(d, d["category_name"]): d["score"] for d in same})  # fmt: skip

    val = json.loads((tmp_path / "val.all.json").read_text())
    for im in val["images"]:
        picture = tmp_path / "same/pictures" / Path(im["file_name"]).with_suffix(".jpg").name
        with Image.open(picture) as p:  # enlarged by an integer factor to a readable size (pipeline.detect.pages)
            factor = max(1, -(-PICTURE_MIN_SIDE // min(im["width"], im["height"])))
            assert p.size == (im["width"] * min(factor, 4), im["height"] * min(factor, 4))
    page = (tmp_path / "same/index.html").read_text()
    assert all(f"pictures/{Path(im['file_name']).stem}.jpg" in page for im in val["images"])


@pytest.mark.slow
def test_names_in_no_class_list_and_a_vocabulary_file(tmp_path, capsys):
    """An ensemble detector (object head) with novel names: ids index the vocabulary as given, the file form reads
    one name per line, and a CLIP other than the prompts' is refused naming the checkpoint."""
    from pipeline.core import cli
    from pipeline.detect import main

    demo = _checkpoint(tmp_path)
    (tmp_path / "vocab.txt").write_text("# shapes\na striped shape\nred star\n\nblue square\n")
    dets = _detect(tmp_path, demo, None, "file", "--score-thr", "0.0", "--vocabulary-file", str(tmp_path / "vocab.txt"))
    names = ["a striped shape", "red star", "blue square"]
    assert dets and {d["category_name"] for d in dets} <= set(names)
    assert all(d["category_name"] == names[d["category_id"]] for d in dets)
    assert "<td>a striped shape</td><td>novel</td>" in (tmp_path / "file/index.html").read_text()
    assert "<td>blue square</td><td>base</td>" in (tmp_path / "file/index.html").read_text()
    argv = [str(tmp_path / "final.pth"), str(demo / "images/val"), "--vocabulary", "x",
            "--clip-model", "OADP-Small-ViT-32", "--clip-weights", "random", "--device", "cpu",
            "--out-dir", str(tmp_path / "no")]  # fmt: skip
    assert cli.run_main(main, argv) == 2 and not (tmp_path / "no/detections.json").exists()
    assert "prompts were made with CLIP OADP-Tiny-ViT-32 random" in capsys.readouterr().err


def _exif_rotated_copy(source: Path, path: Path) -> Image.Image:
    """``path``: ``source`` cut to a landscape 256 x 160, saved as a JPEG whose EXIF orientation (6) says "turn
    90 degrees clockwise to view"; returns the upright image as the decoder reads it (portrait 160 x 256)."""
    from pipeline.core.images import decode

    exif = Image.Exif()
    exif[0x0112] = 6
    with Image.open(source) as im:
        im.convert("RGB").crop((0, 48, 256, 208)).save(path, quality=95, exif=exif)
    upright = decode(path)
    assert upright.size == (160, 256)
    return upright


@pytest.mark.slow
def test_images_are_detected_and_drawn_upright_and_bad_ones_follow_the_policy(tmp_path, capsys, monkeypatch):
    """The checkpoint's own CLIP (no flags); an EXIF-rotated JPEG is detected as its upright copy is, and drawn
    upright; a 0-byte image stops the run naming it (error) or is left out, named (skip); a big vocabulary logs
    its embedding's progress."""
    from pipeline.core import cli
    from pipeline.detect import main, vocabulary

    demo = _checkpoint(tmp_path)
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    source = sorted((demo / "images/val").iterdir())[0]
    _exif_rotated_copy(source, photos / "a_rotated.jpg").save(photos / "nested/b_upright.png")
    (photos / "c_empty.jpg").write_bytes(b"")
    argv = [str(tmp_path / "final.pth"), str(photos), "--vocabulary", ", ".join(DEMO4), "--device", "cpu"]
    assert cli.run_main(main, [*argv, "--out-dir", str(tmp_path / "error")]) == 2
    assert f"{photos / 'c_empty.jpg'}: unreadable image, id 2" in capsys.readouterr().err  # ids in path order
    assert not (tmp_path / "error/detections.json").exists()

    monkeypatch.setattr(vocabulary, "PROGRESS_NAMES", 2)  # a "big" vocabulary of 4 names
    assert cli.run_main(main, [*argv, "--on-bad-image", "skip", "--out-dir", str(tmp_path / "skip")]) == 0
    err = capsys.readouterr().err
    assert f"skipping {photos / 'c_empty.jpg'}: unreadable image, id 2" in err
    assert "embedding 4 names with the ViLD templates" in err and "vild: 4 names x 74 templates: " in err
    dets = json.loads((tmp_path / "skip/detections.json").read_text())
    rotated = {(d["category_name"], tuple(d["bbox"])): d["score"] for d in dets if d["image_id"] == 1}
    upright = {(d["category_name"], tuple(d["bbox"])): d["score"] for d in dets if d["image_id"] == 3}
    assert rotated and {d["image_id"] for d in dets} == {1, 3}
    _assert_same(rotated, upright)
    assert all(d["bbox"][0] + d["bbox"][2] <= 160.5 and d["bbox"][1] + d["bbox"][3] <= 256.5 for d in dets)
    for stem in ("a_rotated", "b_upright"):
        with Image.open(tmp_path / f"skip/pictures/{stem}.jpg") as p:
            assert p.width * 256 == p.height * 160  # portrait, as the detector saw it
    with (
        Image.open(tmp_path / "skip/pictures/a_rotated.jpg") as a,
        Image.open(tmp_path / "skip/pictures/b_upright.jpg") as b,
    ):
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() < 3  # the same picture


def test_vocabulary_parsing(tmp_path):
    from pipeline.detect.vocabulary import parse_vocabulary, read_vocabulary_file, vocabulary_names

    assert parse_vocabulary(" red star,a striped shape , ") == ["red star", "a striped shape"]
    (tmp_path / "v.txt").write_text("red star\n# comment\n\nblue circle\n")
    assert read_vocabulary_file(tmp_path / "v.txt") == ["red star", "blue circle"]
    assert vocabulary_names(file=tmp_path / "v.txt") == ["red star", "blue circle"]
    # a name that happens to be a file path is a name: files come by --vocabulary-file only
    assert parse_vocabulary(str(tmp_path / "v.txt")) == [str(tmp_path / "v.txt")]
    assert vocabulary_names(["dog ", "cat"]) == ["dog", "cat"]
    with pytest.raises(ValueError, match=r"repeated names \['red star'\]"):
        parse_vocabulary("red star, red star")
    with pytest.raises(ValueError, match="no class names"):
        parse_vocabulary(" , ")
    with pytest.raises(ValueError, match="either as --vocabulary .* or as --vocabulary-file"):
        vocabulary_names("a", tmp_path / "v.txt")
    with pytest.raises(ValueError, match="either as --vocabulary"):
        vocabulary_names()
    with pytest.raises(ValueError, match=r"--vocabulary-file .*missing\.txt"):
        read_vocabulary_file(tmp_path / "missing.txt")
    names = [f"thing {i}" for i in range(10_000)]
    assert parse_vocabulary(", ".join(names)) == names  # a big vocabulary parses at once (no quadratic check)


def test_image_files_and_folders_are_read_recursively(tmp_path):
    from pipeline.detect.vocabulary import image_items

    for name in ("000000000012.jpg", "000000000003.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    items = image_items([tmp_path])
    assert [(it.image_id, it.path.name) for it in items] == [(3, "000000000003.png"), (12, "000000000012.jpg")]
    assert [it.image_id for it in image_items([tmp_path], limit=1)] == [3]  # the first N in path order
    (tmp_path / "nested/deeper").mkdir(parents=True)
    (tmp_path / "nested/deeper/000000000007.JPG").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden/000000000001.jpg").write_bytes(b"")
    (tmp_path / "nested/.000000000002.jpg").write_bytes(b"")
    items = image_items([tmp_path])
    assert [(it.image_id, it.path.relative_to(tmp_path).as_posix()) for it in items] == [
        (3, "000000000003.png"), (12, "000000000012.jpg"), (7, "nested/deeper/000000000007.JPG")
    ]  # fmt: skip
    assert [it.path.name for it in image_items([tmp_path / "nested"])] == ["000000000007.JPG"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/cat.jpg").write_bytes(b"")
    items = image_items([tmp_path / "sub/cat.jpg", tmp_path / "000000000012.jpg"])
    assert [(it.image_id, it.path.name) for it in items] == [(1, "000000000012.jpg"), (2, "cat.jpg")]
    (tmp_path / "sub/000000000012.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="two images named '000000000012'"):
        image_items([tmp_path])
    with pytest.raises(ValueError, match="no such image file or folder"):
        image_items([tmp_path / "missing.jpg"])


def test_base_first_keeps_each_group_in_order():
    from pipeline.models.detector.inference import base_first

    ordered, num_base, position = base_first(["x", "b2", "y", "b1"], ["b1", "b2", "b3"])
    assert (ordered, num_base, position) == (["b2", "b1", "x", "y"], 2, [1, 3, 0, 2])


def test_labels_stay_inside_the_image_and_read_on_their_colour():
    from pipeline.core.render import class_colour, draw_detections, label_position, text_colour

    assert label_position((10, 30, 50, 60), (40, 12), (100, 80)) == (10, 18)  # above the box
    assert label_position((10, 5, 50, 60), (40, 12), (100, 80)) == (10, 5)  # no room above: inside
    assert label_position((90, 5, 99, 60), (40, 12), (100, 80)) == (60, 5)  # shifted left into the image
    assert text_colour((255, 255, 0)) == (0, 0, 0) and text_colour((0, 0, 160)) == (255, 255, 255)
    assert class_colour("red star") == class_colour("red star") != class_colour("a striped shape")
    image = Image.new("RGB", (64, 48), (128, 128, 128))
    out = draw_detections(image, [(40, 2, 63, 20)], ["a very long class name"], [0.87])
    assert out.size == image.size and image.getpixel((50, 2)) == (128, 128, 128)  # the input is left as it was
    assert out.getpixel((50, 20)) == class_colour("a very long class name")  # the box's bottom edge


def test_learned_context_embeds_new_names_as_the_ml_prompt_does():
    from pipeline.models.clip import load_clip, text
    from pipeline.prompts import ml

    clip = load_clip(TINY, "random")
    learner = ml.PromptLearner(clip.model, ["red star", "a striped shape"], ml.MLOptions())
    with torch.no_grad():
        learner.ctx.add_(0.1)  # a "learned" context, not the initial one
        expected = learner.text_embeddings()
    got = text.context_embeddings(clip.model, ["a striped shape", "red star"], learner.ctx.detach())
    torch.testing.assert_close(got, expected.flip(0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_demo_plans_detect_and_its_gallery(snakemake_bin, tmp_path):
    cmd = [snakemake_bin, "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "-- results/train/vild_demo/final.pth results/demo_data/images/val" in out
    assert "results/detect/vild_demo/index.html" in out and "--clip-model=OADP-Teacher-ViT-4H" in out
    assert "'--vocabulary=red circle, green square" in out and "a striped shape" in out
    assert "--detect-dir results/detect/vild_demo" in out
    assert "results/export_instructcv/gt/image_pairs_evaluation" in out
    assert "--detections results/evaluate/vild_demo/detections.json" in out
    off = subprocess.run([*cmd, "--config", "detect={experiment: null}", "export_instructcv={sources: []}"],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert off.returncode == 0 and "pipeline.detect" not in off.stdout and "--detect-dir" not in off.stdout
    assert "python -m pipeline.export_instructcv" not in off.stdout


def test_report_gallery_links_the_pictures_relative_to_the_report(tmp_path):
    from pipeline.report.gallery import gallery_lines

    detect_dir = tmp_path / "results/detect/vild_demo"
    (detect_dir / "pictures").mkdir(parents=True)
    for stem in ("000000000130", "000000000129"):
        Image.new("RGB", (8, 8)).save(detect_dir / f"pictures/{stem}.jpg")
    dets = [{"image_id": 129, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.9, "category_name": "red star"}] * 2
    (detect_dir / "detections.json").write_text(json.dumps(dets))
    lines = gallery_lines(detect_dir, tmp_path / "results/report")
    assert "2 detections on 2 images" in lines[0] and "(../detect/vild_demo/index.html)" in lines[0]
    assert "red star 2" in lines
    assert lines[-2:] == [
        "![000000000129](../detect/vild_demo/pictures/000000000129.jpg)",
        "![000000000130](../detect/vild_demo/pictures/000000000130.jpg)",
    ]
    (detect_dir / "detections.json").write_text(json.dumps([{"image_id": 1}]))
    with pytest.raises(ValueError, match=r"detections\.json: detection #0 has no 'category_id'"):
        gallery_lines(detect_dir, tmp_path / "results/report")
    (detect_dir / "detections.json").write_text(
        json.dumps([{k: v for k, v in dets[0].items() if k != "category_name"}])
    )
    with pytest.raises(ValueError, match="not a detections file of pipeline.detect"):
        gallery_lines(detect_dir, tmp_path / "results/report")


def _readme_block(marker: str) -> str:
    """The README's fenced Python block that contains ``marker``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README.md: {len(found)} python blocks with {marker!r}"
    return found[0]


@pytest.mark.slow
def test_the_readme_python_example_runs_and_matches_the_command_line(tmp_path, monkeypatch):
    """The README's three lines, run as written in a folder laid out as after ``make demo`` (a tiny random
    checkpoint at the README's path), give the detections with names that the command line writes."""
    import shutil

    from pipeline.detect import main

    code = _readme_block("Detector.from_checkpoint")
    assert len([line for line in code.splitlines() if line.strip()]) == 3
    demo = _checkpoint(tmp_path)
    run = tmp_path / "run"
    (run / "results/train/oadp_demo").mkdir(parents=True)
    shutil.copy(tmp_path / "final.pth", run / "results/train/oadp_demo/final.pth")
    shutil.copytree(demo / "images/val", run / "results/demo_data/images/val")
    monkeypatch.chdir(run)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    detections = namespace["detections"]
    names = re.search(r"\[(\"[^]]*\")\]\)", code).group(1)  # the names the example asks for
    names = [n.strip().strip('"') for n in names.split(",")]
    assert detections and {d["category_name"] for d in detections} <= set(names)
    assert all(d["category_name"] == names[d["category_id"]] and d["score"] > 0.3 for d in detections)
    val = sorted(p.name for p in (run / "results/demo_data/images/val").iterdir())
    assert {d["file_name"] for d in detections} <= set(val)
    main(["results/train/oadp_demo/final.pth", "results/demo_data/images/val", f"--vocabulary={', '.join(names)}"])
    written = json.loads((run / "detections/vild_demo/detections.json").read_text())  # the checkpoint's experiment
    _assert_same({_key(d, d["category_name"]): d["score"] for d in written},
                 {_key(d, d["category_name"]): d["score"] for d in detections})  # fmt: skip


@pytest.mark.slow
def test_a_given_checkpoint_plans_no_training(snakemake_bin, tmp_path):
    """detect.checkpoint: Snakemake reads the file as it is (even this folder's results/train/E/final.pth, whose
    training inputs do not exist here) and plans the detect job only, without CLIP flags (the checkpoint's own)."""
    (tmp_path / "results/train/vild_demo").mkdir(parents=True)
    (tmp_path / "results/train/vild_demo/final.pth").write_bytes(b"a trained detector")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos/cat.jpg").write_bytes(b"")
    cmd = [snakemake_bin, "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    config = ["detect={checkpoint: results/train/vild_demo/final.pth, experiment: null, images: [photos], "
              "vocabulary: [red star, -dog]}", "export_instructcv={sources: []}"]  # fmt: skip
    proc = subprocess.run([*cmd, "--config", *config, "--", "results/detect/vild_demo/index.html"],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^detect\s+1$", proc.stdout, flags=re.M) and re.search(r"^total\s+1$", proc.stdout, flags=re.M)
    assert f"-- {tmp_path / 'results/train/vild_demo/final.pth'} photos" in proc.stdout
    assert "'--vocabulary=red star, -dog'" in proc.stdout and "--clip-model" not in proc.stdout
    target = ["--", "results/detect/vild_demo/index.html"]
    trained = subprocess.run([*cmd, "--config", "export_instructcv={sources: []}", *target],
                             capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert trained.returncode == 0 and "python -m pipeline.train" in trained.stdout  # without it: trained first
    missing = subprocess.run([*cmd, "--config", "detect={checkpoint: nothing.pth, images: [photos], vocabulary: [x]}"],
                             capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert missing.returncode != 0 and "config key 'detect.checkpoint': no such file: nothing.pth" in missing.stderr
