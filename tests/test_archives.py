"""pipeline.released archives that are damaged or hold links and devices: the import stops with an error naming the
archive and the member (never a bare zipfile / tarfile error, never a silent skip)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pipeline.core import cli
from pipeline.released import archives
from tests.test_released_features import FOLDER, IMAGES, annotation_file, reference_file, release, run_import, saved


def _tar(path: Path, members: list[tarfile.TarInfo], files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(files[info.name]) if info.name in files else None)
    return path


def _regular(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def test_a_zip_member_with_a_bad_crc_is_named_with_its_archive(tmp_path, capsys):
    ann = annotation_file(tmp_path)
    sources = release(tmp_path, "objects", "zip")
    first = sources[0]
    data = bytearray(first.read_bytes())
    member = saved(reference_file("objects", 9, 640, 480))
    at = bytes(data).index(member[-64:])  # inside the stored (uncompressed) bytes of 000000000009.pth
    data[at + 10] ^= 0xFF
    first.write_bytes(bytes(data))
    out = tmp_path / "objects.h5"
    with pytest.raises(ValueError, match=rf"{first}::000000000009\.pth: corrupt zip member \(BadZipFile: Bad CRC-32"):
        run_import(ann, sources, "objects", out)
    assert not out.exists()
    argv = ["features", "--kind", "objects", "--source", *map(str, sources), "--annotations", str(ann),
            "--model", "OADP-Tiny-ViT-32", "--output", str(out)]  # fmt: skip
    from pipeline.released import main

    assert cli.run_main(main, argv) == 2
    assert f"{first}::000000000009.pth: corrupt zip member" in capsys.readouterr().err


def test_an_unreadable_zip_is_named(tmp_path):
    bad = tmp_path / "objects.00.zip"
    good = release(tmp_path, "objects", "zip")[0]
    bad.write_bytes(good.read_bytes()[:200])  # the members' start only: no central directory
    with pytest.raises(ValueError, match=rf"{bad}: unreadable zip archive"):
        archives.RandomAccess([bad], "objects", {9})


@pytest.mark.parametrize(
    "kind_of_member, said",
    [
        (tarfile.SYMTYPE, "a symbolic link to '000000000009.pth'"),
        (tarfile.LNKTYPE, "a hard link to 'globals/train2017/000000000009.pth'"),
        (tarfile.CHRTYPE, "a device"),
        (tarfile.BLKTYPE, "a device"),
    ],
)
def test_tar_links_and_devices_are_refused_naming_archive_and_member(tmp_path, kind_of_member, said):
    ann = annotation_file(tmp_path)
    files = {f"globals/{FOLDER}/{i:012d}.pth": saved(reference_file("globals", i, w, h)) for i, w, h in IMAGES}
    odd = f"globals/{FOLDER}/000000000025.pth"
    members = [_regular(name, data) for name, data in files.items() if name != odd]
    link = tarfile.TarInfo(odd)
    link.type = kind_of_member
    if kind_of_member == tarfile.SYMTYPE:
        link.linkname = "000000000009.pth"
    elif kind_of_member == tarfile.LNKTYPE:
        link.linkname = f"globals/{FOLDER}/000000000009.pth"
    members.append(link)
    path = _tar(tmp_path / "globals.tar.gz", members, files)
    with pytest.raises(ValueError, match=rf"{path}::{odd}: {said}, not a regular file"):
        run_import(ann, [path], "globals", tmp_path / "globals.h5")
    # a link that names no wanted image is no feature file: ignored as before
    assert list(archives.stream_tar(path, "globals", {9})) != []


def test_a_truncated_tar_is_named(tmp_path):
    path = release(tmp_path, "globals", "tar")[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match=rf"{path}: corrupt tar archive (after member|at its start)"):
        list(archives.stream_tar(path, "globals", {i for i, _, _ in IMAGES}))
