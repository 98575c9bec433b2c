"""Read an image-classification folder, ``root/<class>/<image>``, as encoded images and labels.

Images are kept as the bytes on disk (no decoding, no Pillow). Each file is checked cheaply so
that a pack does not store garbage: the magic bytes must name a known format, and for formats
whose end is marked (JPEG's EOI, PNG's IEND, GIF's trailer) or whose length is recorded (WebP,
BMP) a truncated file is caught too. A file that fails becomes a :class:`BadRow` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...errors import SourceError, StorageError
from ...format.schema import Field, Schema
from .base import BadRow, Chunk, Source, SourceInfo
from .files import InputFiles, is_url

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FILES_PER_SEGMENT = 1000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its CRC


@dataclass(frozen=True)
class ImageSegment:
    """Files ``first_index, first_index + 1, ...`` of the sorted listing, with their labels."""

    first_index: int
    files: tuple[str, ...]
    labels: tuple[int, ...]


class ImageFolderSource(Source):
    """``root/<class_name>/**/<image>``: fields ``image`` (encoded bytes) and ``label`` (int64).

    Every subdirectory of ``root`` is a class (hidden ones aside), labelled by its index in
    sorted order, as torchvision's ``ImageFolder`` does; files are walked in sorted order within
    each class. Files without an image suffix are ignored.
    """

    def __init__(self, root: str | os.PathLike, *,
                 files_per_segment: int = FILES_PER_SEGMENT) -> None:
        self.root = os.fspath(root)
        self.files_per_segment = files_per_segment
        self.description = f"image folder: {self.root}"
        self._listing: tuple[dict[str, int], list[tuple[str, int]], int] | None = None

    def _list(self) -> tuple[dict[str, int], list[tuple[str, int]], int]:
        """Label map, (path, label) of every image in order, and their total size."""
        if self._listing is None:
            by_class = _remote_images(self.root, self.files) if is_url(self.root) else _local_images(self.root)
            label_map = {name: i for i, name in enumerate(sorted(by_class))}
            files: list[tuple[str, int]] = []
            total = 0
            for name, label in label_map.items():
                for path, size in by_class[name]:
                    files.append((path, label))
                    total += size
            if not files:
                raise SourceError(
                    f"{self.root}: no images found in class subdirectories "
                    f"(expected root/<class>/<file> with suffix in {IMAGE_SUFFIXES})"
                )
            self._listing = (label_map, files, total)
        return self._listing

    def __getstate__(self) -> dict:
        # Workers get self-contained segments; shipping the scan with every job would cost more.
        return {**self.__dict__, "_listing": None}

    def info(self) -> SourceInfo:
        label_map, _, total = self._list()
        schema = Schema((Field("image", "image"), Field("label", "scalar", dtype="int64")))
        return SourceInfo(schema=schema, metadata={"label_map": dict(label_map)}, bytes_hint=total)

    def segments(self) -> list[ImageSegment]:
        _, files, _ = self._list()
        step = self.files_per_segment
        return [ImageSegment(i, tuple(p for p, _ in files[i:i + step]),
                             tuple(lab for _, lab in files[i:i + step]))
                for i in range(0, len(files), step)]

    def read(self, segment: ImageSegment) -> Iterator[Chunk | BadRow]:
        images: list[bytes] = []
        labels: list[int] = []
        run_start = segment.first_index
        for i, (path, label) in enumerate(zip(segment.files, segment.labels)):
            try:
                data = self.files.read_all(path)
                problem = image_problem(data)
            except StorageError:
                raise  # the store failed after its retries: not a fault of the image
            except OSError as exc:
                problem = f"cannot read: {exc.strerror or exc}"
            if problem is None:
                images.append(data)
                labels.append(label)
                continue
            if images:
                yield self._chunk(images, labels, run_start)
                images, labels = [], []
            yield BadRow(path, problem)
            run_start = segment.first_index + i + 1
        if images:
            yield self._chunk(images, labels, run_start)

    def _chunk(self, images: list[bytes], labels: list[int], first: int) -> Chunk:
        # Rows are files, so a chunk can only name the folder and the file's place in order.
        columns = {"image": images, "label": np.asarray(labels, dtype=np.int64)}
        return Chunk(columns, origin=self.root, first_row=first, row_label="image")


def _local_images(root: str) -> dict[str, list[tuple[str, int]]]:
    """``{class: [(path, size), ...]}`` of a local folder (hidden class folders skipped)."""
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise SourceError(f"{root}: cannot list image folder: {exc}") from None
    return {name: list(_images_under(os.path.join(root, name))) for name in classes}


def _remote_images(root: str, files: InputFiles) -> dict[str, list[tuple[str, int]]]:
    """The same for a URL: one listing, the same rules and order as for a local folder."""
    base = root.rstrip("/") + "/"
    found: dict[str, list[tuple[tuple[str, ...], str, int]]] = {}
    for url, size in files.walk(root).items():
        parts = tuple(url[len(base):].split("/"))
        if len(parts) < 2 or any(p.startswith(".") for p in parts) or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
            continue
        found.setdefault(parts[0], []).append((parts[1:], url, size))
    return {name: [(url, size) for _, url, size in sorted(items)] for name, items in found.items()}


def _images_under(folder: str) -> Iterator[tuple[str, int]]:
    """(path, size) of image files below ``folder``, sorted by path relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                path = os.path.join(dirpath, name)
                found.append((os.path.relpath(path, folder).split(os.sep), path))
    for _, path in sorted(found):
        try:
            yield path, os.path.getsize(path)
        except OSError:
            yield path, 0  # unreadable: read() reports it as a bad row


def image_problem(data: bytes) -> str | None:
    """Why ``data`` is not a complete image file, or None when its structure looks right."""
    if not data:
        return "empty file"
    # Some writers pad files with zero bytes after the end marker.
    end = data.rstrip(b"\x00")
    if data.startswith(b"\xff\xd8\xff"):
        return None if end.endswith(b"\xff\xd9") else "truncated JPEG (no end-of-image marker)"
    if data.startswith(_PNG_SIGNATURE):
        return None if end.endswith(_PNG_END) else "truncated PNG (no IEND chunk)"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return None if end.endswith(b";") else "truncated GIF (no trailer)"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        size = int.from_bytes(data[4:8], "little") + 8
        return None if len(data) >= size else f"truncated WebP ({len(data)} of {size} bytes)"
    if data.startswith(b"BM") and len(data) >= 6:
        size = int.from_bytes(data[2:6], "little")  # 0 in some writers: unknown
        return None if len(data) >= size else f"truncated BMP ({len(data)} of {size} bytes)"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return None  # TIFF marks no end; decoding is the only full check
    return f"not a known image format (starts with {data[:8]!r})"
