"""pipeline.core.images: the one image decoder (EXIF orientation, every mode as 8-bit RGB, the pixel limit checked
on the header), the bad-image policy over it, file names that leave the image folder, and the detector's ReadImage
transform reading through it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core import images
from pipeline.core.images import ImageItem, ImagePolicy, UnreadableImage, decode


def _stored(width: int = 40, height: int = 20) -> Image.Image:
    """A picture whose left quarter is red, the rest blue: its orientation is visible."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, :] = (0, 0, 255)
    a[:, : width // 4] = (255, 0, 0)
    return Image.fromarray(a)


def _exif_rotated(path: Path, orientation: int = 6) -> Image.Image:
    """``path``: a JPEG of :func:`_stored` with EXIF orientation ``orientation``; returns the stored pixels as read
    back without the orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    _stored().save(path, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as im:
        return im.convert("RGB")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width x height`` RGB pixels and holds a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


def test_exif_orientation_is_applied(tmp_path):
    raw = _exif_rotated(tmp_path / "rotated.jpg")
    assert raw.size == (40, 20)
    upright = decode(tmp_path / "rotated.jpg")
    assert upright.mode == "RGB" and upright.size == (20, 40)  # orientation 6: turned 90 degrees clockwise
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(raw.transpose(Image.Transpose.ROTATE_270)))
    top, bottom = np.asarray(upright)[2, 10], np.asarray(upright)[-3, 10]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200  # the red quarter is now on top


def test_16_bit_grey_keeps_its_high_byte(tmp_path):
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000 + 37).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # PIL reads 16-bit grey as I;16 / I
    rgb = np.asarray(decode(tmp_path / "deep.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], (values >> 8).astype(np.uint8))
    assert rgb.min() == 0 and rgb.max() == 246  # not all white (PIL's own conversion clips at 255)


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "RGBA", "L", "1"])
def test_every_mode_becomes_8_bit_rgb(tmp_path, mode):
    source = _stored(16, 8)
    image = source.convert(mode) if mode != "LA" else source.convert("L").convert("LA")
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    image.save(path)
    out = decode(path)
    assert out.mode == "RGB" and out.size == (16, 8)
    with Image.open(path) as im:
        expected = im.convert("RGBA" if mode == "P" else im.mode).convert("RGB")  # alpha dropped
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    assert (tmp_path / "bomb.png").stat().st_size < 200

    def no_decoding(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(UnreadableImage, match=r"bomb\.png: unreadable image \(30000 x 30000 = 900000000 pixels"):
        decode(tmp_path / "bomb.png")
    _png_header_only(tmp_path / "small.png", 300, 200)  # under a lower limit given by the stage
    with pytest.raises(UnreadableImage, match=r"300 x 200 = 60000 pixels, more than max_image_pixels 50000"):
        decode(tmp_path / "small.png", max_pixels=50000)
    policy = ImagePolicy("skip", max_pixels=10**8)
    assert policy.read(ImageItem(7, tmp_path / "bomb.png")) is None
    assert "bomb.png: unreadable image, id 7 (30000 x 30000" in policy.skipped[0]["reason"]


def test_empty_and_truncated_files_follow_the_policy_naming_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    _stored(64, 64).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name in ("empty.jpg", "cut.jpg", "missing.jpg"):
        with pytest.raises(UnreadableImage, match=rf"{name}: unreadable image \("):
            decode(tmp_path / name)
        with pytest.raises(images.BadImageError, match=rf"{name}: unreadable image, id 3 \("):
            ImagePolicy("error").read(ImageItem(3, tmp_path / name))
        skip = ImagePolicy("skip")
        assert skip.read(ImageItem(3, tmp_path / name)) is None
        assert skip.skipped[0]["image_id"] == 3 and name in skip.skipped[0]["reason"]
    assert ImagePolicy("skip").read(ImageItem(4, tmp_path / "whole.jpg")).size == (64, 64)


def test_file_names_that_leave_the_image_folder_are_refused_naming_the_image(tmp_path):
    assert images.image_relpath({"id": 1, "file_name": "sub/a.jpg"}) == "sub/a.jpg"
    assert images.image_relpath({"id": 1, "file_name": "sub/../a.jpg"}) == "sub/../a.jpg"  # stays inside
    for name in ("../x.jpg", "sub/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "\\\\server\\x.jpg"):
        with pytest.raises(ValueError, match=r"image 5: file_name .* (absolute path|leads out of the image folder)"):
            images.image_relpath({"id": 5, "file_name": name})
    # LVIS records name the COCO split folder beside the image folder: that one step up is the format's own
    assert images.image_relpath({"id": 2, "coco_url": "http://x/train2017/2.jpg"}) == "../train2017/2.jpg"
    with pytest.raises(ValueError, match="image 2 has neither file_name nor a coco_url"):
        images.image_relpath({"id": 2, "coco_url": "http://x/../2.jpg"})
    annotations = tmp_path / "a.json"
    annotations.write_text('{"images": [{"id": 9, "file_name": "../x.jpg"}]}')
    with pytest.raises(ValueError, match=r"a\.json: image 9: file_name '\.\./x\.jpg' leads out"):
        images.list_images(annotations, tmp_path)


def test_the_custom_dataset_check_refuses_a_file_outside_the_folder(tmp_path):
    from pipeline.formats.custom_dataset import CustomDatasetError, check_images

    (tmp_path / "images").mkdir()
    _stored().save(tmp_path / "x.jpg")  # exists, but outside the image folder
    data = {"images": [{"id": 11, "file_name": "../x.jpg", "width": 40, "height": 20}]}
    with pytest.raises(CustomDatasetError, match=r"train\.json: image 11: file_name '\.\./x\.jpg' leads out"):
        check_images(data, tmp_path / "images", "train.json")
    data["images"][0]["file_name"] = str(tmp_path / "x.jpg")
    with pytest.raises(CustomDatasetError, match="image 11: file_name .* is an absolute path"):
        check_images(data, tmp_path / "images", "train.json")


def test_the_detector_reads_images_through_the_decoder(tmp_path):
    """ReadImage (train and test pipelines) gives the decoder's pixels as BGR, upright; the test pipeline of a
    trained detector (also one stored with LoadImageFromFile) reads the same pixels."""
    from pipeline.core.images import read_bgr
    from pipeline.models.detector import register_modules
    from pipeline.models.detector.inference import test_pipeline
    from pipeline.models.detector.transforms import ReadImage

    register_modules()
    _exif_rotated(tmp_path / "r.jpg")
    upright = np.asarray(decode(tmp_path / "r.jpg"))
    out = ReadImage()(dict(img_path=str(tmp_path / "r.jpg")))
    assert out["img"].dtype == np.uint8 and out["img_shape"] == out["ori_shape"] == (40, 20)
    np.testing.assert_array_equal(out["img"], upright[:, :, ::-1])
    np.testing.assert_array_equal(read_bgr(tmp_path / "r.jpg"), upright[:, :, ::-1])
    with pytest.raises(UnreadableImage, match="r.jpg: unreadable image .* more than max_image_pixels 100"):
        ReadImage(max_pixels=100)(dict(img_path=str(tmp_path / "r.jpg")))
    for loader in ("LoadImageFromFile", "ReadImage"):
        steps = [dict(type=loader), dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape"))]
        data = test_pipeline(steps)(ImageItem(1, tmp_path / "r.jpg"), decode(tmp_path / "r.jpg"))
        np.testing.assert_array_equal(data["inputs"].numpy().transpose(1, 2, 0), upright[:, :, ::-1])
        assert data["data_samples"].metainfo["ori_shape"] == (40, 20)


@pytest.mark.slow
def test_the_pixel_limit_and_the_policy_reach_every_stage_that_reads_images(snakemake_bin, tmp_path):
    """max_image_pixels and on_bad_image are passed to proposals predict, the OAKE extractors, train predict, detect
    and export_instructcv (the demo's plan)."""
    import subprocess

    from tests.conftest import REPO

    cmd = [snakemake_bin, "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    proc = subprocess.run([*cmd, "--config", "max_image_pixels=1234", "on_bad_image=skip"],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    readers = {
        "proposals predict": [x for x in lines if "python -m pipeline.proposals" in x and " predict " in x],
        "oake": [x for x in lines if "python -m pipeline.oake." in x and "pipeline.oake.verify" not in x],
        "train predict": [x for x in lines if "python -m pipeline.train" in x and " predict " in x],
        "detect": [x for x in lines if "python -m pipeline.detect" in x],
        "export_instructcv": [x for x in lines if "python -m pipeline.export_instructcv" in x],
    }
    for stage, commands in readers.items():
        assert commands and all("--max-image-pixels 1234" in x and "--on-bad-image skip" in x for x in commands), stage
