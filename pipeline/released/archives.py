"""The reference's released OAKE files as members of folders, tar and zip archives, read without unpacking.

The reference saves one file per image, ``data/coco/oake/{kind}/{folder}/{image_id:012d}.pth``, and shares them as
``globals.tar.gz``, ``blocks.tar.gz`` (members ``{kind}/{folder}/...``), ``objects.tar.gz`` (``objects/val2017/``)
and ``objects.NN.zip`` (bare names of ``objects/train2017`` files, 3000 per zip; the first also holds the file
list ``objects``). A source here is any of them, or a folder holding that tree:

- a folder is walked; a zip archive is indexed by name: both are read in any order (:class:`RandomAccess`);
- a tar archive (any compression ``tarfile`` reads) is streamed once, in its own member order
  (:func:`stream_tar`); members that arrive before their turn wait in a :class:`Reorder` buffer, in memory up to
  a budget and spilled to a folder beside the output beyond it.

A member is a feature file of ``kind`` when its name is ``<digits>.pth`` (the image id) and its folder path inside
the source names no other OAKE kind; other members are ignored. A wanted member that is not a regular file (a tar
link or device) and an archive or member that fails its checks (a zip member's CRC, a truncated tar stream) are
errors naming the archive and the member. The split folder is not required: image ids are
unique across the COCO 2017 splits, and LVIS's val images include COCO train2017 images (the reference links
``lvis_v1/oake/{globals,blocks}`` to COCO's), so an image is found in whichever folder holds it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.formats.feature_cache import KINDS

log = logging.getLogger(__name__)

MEMBER_NAME = re.compile(r"^(\d+)\.pth$")
MAX_MEMBER_BYTES = 256 << 20  # the largest released file (objects of one image) is a few MB
#: what a corrupt archive raises while it is read (zipfile, tarfile, gzip, bz2, lzma)
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError)


@dataclass(frozen=True)
class Member:
    """One per-image file: ``name`` is its path inside ``source`` (posix)."""

    source: Path
    name: str
    image_id: int

    def __str__(self) -> str:
        return str(self.source / self.name) if self.source.is_dir() else f"{self.source}::{self.name}"


def member_id(name: str, kind: str) -> int | None:
    """The image id of a member path, or ``None`` when it is not a feature file of ``kind``."""
    parts = PurePosixPath(name).parts
    match = MEMBER_NAME.match(parts[-1]) if parts else None
    if match is None:
        return None
    if any(d in KINDS and d != kind for d in parts[:-1]):
        return None
    return int(match.group(1))


def source_type(path: Path) -> str:
    """``folder``, ``zip`` or ``tar``.

    Raises:
        ValueError: ``path`` is missing or none of them (names the path).
    """
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise ValueError(f"{path}: no such release file or folder")
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path}: not a folder, a tar or a zip archive of the reference's OAKE files")


def _check_size(member: Member, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise ValueError(f"{member}: {size} bytes, more than a released feature file holds ({MAX_MEMBER_BYTES})")


class RandomAccess:
    """The wanted members of folders and zip archives, by image id.

    Raises:
        ValueError: two members hold the same image (names both).
    """

    def __init__(self, sources: Sequence[Path], kind: str, wanted: set[int]) -> None:
        self.members: dict[int, Member] = {}
        self._zips: dict[Path, zipfile.ZipFile] = {}
        ignored = 0
        for source in sources:
            names = self._names(source)
            for name in names:
                image_id = member_id(name, kind)
                if image_id is None:
                    ignored += 1
                elif image_id in wanted:
                    self._add(Member(source, name, image_id))
        log.info("%d wanted %s files found in %d folder/zip source(s)", len(self.members), kind, len(sources))
        if ignored:
            log.info("%d other members ignored (not {id}.pth of %s)", ignored, kind)

    def _names(self, source: Path) -> list[str]:
        if source.is_dir():
            names = []
            for root, dirs, files in os.walk(source, followlinks=True):
                dirs.sort()
                rel = Path(root).relative_to(source)
                names += [(rel / f).as_posix() for f in sorted(files)]
            return names
        try:
            zf = self._zips[source] = zipfile.ZipFile(source)
        except ARCHIVE_ERRORS as err:
            raise ValueError(f"{source}: unreadable zip archive ({type(err).__name__}: {err})") from None
        return [info.filename for info in zf.infolist() if not info.is_dir()]

    def _add(self, member: Member) -> None:
        other = self.members.get(member.image_id)
        if other is not None:
            raise ValueError(f"image {member.image_id} is in two release files: {other} and {member}")
        self.members[member.image_id] = member

    def read(self, member: Member) -> bytes:
        """The bytes of ``member``."""
        if member.source in self._zips:
            zf = self._zips[member.source]
            _check_size(member, zf.getinfo(member.name).file_size)
            try:
                return zf.read(member.name)
            except ARCHIVE_ERRORS as err:
                raise ValueError(f"{member}: corrupt zip member ({type(err).__name__}: {err})") from None
        path = member.source / member.name
        _check_size(member, path.stat().st_size)
        return path.read_bytes()

    def close(self) -> None:
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()


def _not_a_file(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"a symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"a hard link to {info.linkname!r}"
    if info.ischr() or info.isblk():
        return "a device"
    if info.isfifo():
        return "a FIFO"
    return "a folder" if info.isdir() else "not a regular file"


def stream_tar(source: Path, kind: str, wanted: set[int]) -> Iterator[tuple[Member, bytes]]:
    """The wanted members of a tar archive with their bytes, in archive order, read in one pass (never seeking).

    Raises:
        ValueError: a wanted member is a link or a device, or the archive is corrupt or truncated (names the archive
            and the member).
    """
    last = None
    try:
        with tarfile.open(source, "r|*") as tf:
            for info in tf:
                last = info.name
                image_id = member_id(info.name, kind)
                if image_id is None or image_id not in wanted:
                    continue
                member = Member(source, info.name, image_id)
                if not info.isfile():
                    what = _not_a_file(info)
                    raise ValueError(f"{member}: {what}, not a regular file (links and devices are not read)")
                _check_size(member, info.size)
                yield member, tf.extractfile(info).read()
    except ARCHIVE_ERRORS as err:
        where = f"after member {last}" if last else "at its start"
        raise ValueError(f"{source}: corrupt tar archive {where} ({type(err).__name__}: {err})") from None


class Reorder:
    """Members waiting for their turn: in memory up to ``budget`` bytes, beyond it in files under ``spill``
    (a folder created on demand and removed by :meth:`close`)."""

    def __init__(self, spill: Path, budget: int) -> None:
        self.spill, self.budget, self.held = spill, budget, 0
        self._memory: dict[int, tuple[Member, bytes]] = {}
        self._disk: dict[int, Member] = {}
        shutil.rmtree(self.spill, ignore_errors=True)  # left by a killed run: its members are read again

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._memory or image_id in self._disk

    def __len__(self) -> int:
        return len(self._memory) + len(self._disk)

    def member(self, image_id: int) -> Member:
        return self._memory[image_id][0] if image_id in self._memory else self._disk[image_id]

    def put(self, member: Member, data: bytes) -> None:
        if self.held + len(data) <= self.budget:
            self._memory[member.image_id] = (member, data)
            self.held += len(data)
            return
        if not self._disk:
            self.spill.mkdir(parents=True, exist_ok=True)
            log.info("reorder buffer over %d MB: spilling early members to %s", self.budget >> 20, self.spill)
        (self.spill / f"{member.image_id}.pth").write_bytes(data)
        self._disk[member.image_id] = member

    def pop(self, image_id: int) -> tuple[Member, bytes]:
        if image_id in self._memory:
            member, data = self._memory.pop(image_id)
            self.held -= len(data)
            return member, data
        member = self._disk.pop(image_id)
        path = self.spill / f"{image_id}.pth"
        data = path.read_bytes()
        path.unlink()
        return member, data

    def close(self) -> None:
        self._memory.clear()
        self._disk.clear()
        shutil.rmtree(self.spill, ignore_errors=True)
