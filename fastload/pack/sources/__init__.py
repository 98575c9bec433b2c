"""Pick the source class for what the user passed to ``fastload.pack``: a path, glob, or object."""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

from ...errors import SourceError
from .base import BadRow, Chunk, Source, SourceInfo
from .compressed import without_compression
from .csv import CsvSource
from .files import InputFiles, is_url
from .hf_folder import DICT as HF_DICT, INFO as HF_INFO, STATE as HF_STATE, hf_folder_source, is_hf_folder

#: every input a path can name, as the CLI help and errors list them
PATH_KINDS = ("Parquet, Arrow IPC or Feather files; JSON Lines or JSON-array files; CSV/TSV; any of "
              "those text files compressed (.gz, .bz2, .xz, .zst, .lz4); .npy/.npz; WebDataset tars; "
              "an MDS or LitData dataset; a Hugging Face save_to_disk folder; Megatron/NeMo/fairseq "
              ".bin + .idx pairs; or an image folder (class_name/*.jpg)")

# suffix -> source kind; each kind maps to one class below
SUFFIX_KINDS = {
    ".parquet": "arrow", ".pq": "arrow", ".arrow": "arrow", ".ipc": "arrow", ".feather": "arrow",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".npy": "numpy", ".npz": "numpy",
    ".tar": "webdataset", ".tar.gz": "webdataset", ".tgz": "webdataset",
    ".idx": "megatron", ".bin": "megatron",
}
TEXT_KINDS = ("jsonl", "csv")  # the kinds also read compressed (data.csv.gz, part.jsonl.zst, ...)
#: the inputs a URL can name (read through ranged requests, never copied whole first)
REMOTE_KINDS = ("Parquet, Arrow IPC or Feather files; JSON Lines or JSON-array files; CSV/TSV; those "
                "text files compressed; .npy/.npz; WebDataset tars; an image folder (class_name/*.jpg); "
                "an MDS or LitData dataset; a Hugging Face save_to_disk folder; Megatron .bin + .idx pairs")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def suffix_kind(path: str) -> str | None:
    """The source kind a file's suffix names (double suffixes such as .tar.gz and .csv.gz included)."""
    name = path.lower()
    for suffix in sorted(SUFFIX_KINDS, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIX_KINDS[suffix]
    plain = without_compression(name)
    if plain != name:
        kind = suffix_kind(plain)
        return kind if kind in TEXT_KINDS else None
    return None


def _file_source(kind: str, paths: list[str], delimiter: str | None) -> Source:
    if kind == "arrow":
        from .arrow_files import ArrowFileSource

        return ArrowFileSource(paths)
    if kind == "jsonl":
        from .jsonl import JsonlSource

        return JsonlSource(paths)
    if kind == "csv":
        return CsvSource(paths, delimiter=delimiter)
    if kind == "numpy":
        from .numpy_files import NumpySource

        return NumpySource(paths)
    if kind == "megatron":
        from .megatron import MegatronSource

        return MegatronSource(paths)
    from .webdataset import WebDatasetSource

    return WebDatasetSource(paths)


def open_source(src: Any, *, delimiter: str | None = None, files: InputFiles | None = None) -> Source:
    """A :class:`Source` for ``src``: a Source, a path/dir/glob or URL, a table, a data frame, a
    Hugging Face dataset, a torch Dataset or an iterable. ``delimiter`` applies to CSV files only;
    ``files`` opens URLs (storage options, timeouts and retries)."""
    if isinstance(src, Source):
        source = src
        if source._files is None and files is not None:  # a source made by hand reads URLs the pack's way
            source.use_files(files)
    elif isinstance(src, (str, os.PathLike)):
        text = os.fspath(src)
        files = files or InputFiles()
        source = (_url_source(text, delimiter, files) if is_url(text) else _path_source(text, delimiter))
        source.use_files(files)
    else:
        source = _object_source(src)
    if delimiter is not None and not isinstance(source, CsvSource):
        raise SourceError(f"a delimiter applies to CSV files, not to {source.description}")
    return source


def _object_source(src: Any) -> Source:
    from .frames import frame_source

    frame = frame_source(src)
    if frame is not None:
        return frame
    mod = type(src).__module__
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(src, pa.RecordBatchReader):
            from .python_objects import ArrowStreamSource

            return ArrowStreamSource(src)
        from .python_objects import ArrowTableSource

        return ArrowTableSource(src)
    if _is_map_style_torch(src):
        from .python_objects import TorchMapSource

        return TorchMapSource(src)
    if hasattr(src, "__iter__"):
        from .python_objects import IterableSource

        return IterableSource(src, f"python {type(src).__name__}")
    raise SourceError(f"cannot pack a {type(src).__name__}: pass a path, a table, a data frame, a "
                      "Hugging Face dataset, a torch Dataset or an iterable of dicts")


def _is_map_style_torch(obj: Any) -> bool:
    # An object can only be a torch Dataset if torch is already imported; importing it costs ~1.5 s.
    if "torch" not in sys.modules:
        return False
    from torch.utils.data import Dataset, IterableDataset

    return isinstance(obj, Dataset) and not isinstance(obj, IterableDataset) and hasattr(obj, "__len__")


def _path_source(text: str, delimiter: str | None) -> Source:
    if any(ch in text for ch in "*?["):
        paths = sorted(glob.glob(text, recursive=True))
        if not paths:
            raise SourceError(f"no files match {text!r}")
        return _files_source(paths, text, delimiter)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{text} does not exist")
    if path.is_file():
        return _files_source([text], text, delimiter)
    if is_hf_folder(path):
        return hf_folder_source(path)
    index = path / "index.json"
    if index.is_file():
        kind = _index_kind(index)
        if kind == "mds":
            from .mds import MDSSource

            return MDSSource(text)
        if kind == "litdata":
            from .litdata import LitDataSource

            return LitDataSource(text)
    files = sorted(str(p) for p in path.rglob("*") if p.is_file() and suffix_kind(p.name))
    data_files = [p for p in files if not without_compression(p.lower()).endswith(".json")]
    if data_files:  # .json files beside data files are taken for metadata, not rows
        return _files_source(data_files, text, delimiter)
    if files:
        return _files_source(files, text, delimiter)
    if any(p.is_dir() for p in path.iterdir()) and any(
        q.suffix.lower() in IMAGE_SUFFIXES for q in path.glob("*/*")
    ):
        from .imagefolder import ImageFolderSource

        return ImageFolderSource(text)
    raise SourceError(
        f"{text}: found no input fastload can read ({PATH_KINDS})"
    )


def _url_source(url: str, delimiter: str | None, files: InputFiles) -> Source:
    """A remote file, glob or directory of files (``s3://bucket/raw/*.parquet``): the file kinds
    that read through ranged requests; datasets of other tools and image folders are copied first."""
    if any(ch in url.split("://", 1)[1] for ch in "*?["):
        paths = files.glob(url)
        if not paths:
            raise SourceError(f"no files match {url!r}")
    elif files.is_dir(url):
        found = files.walk(url)
        base = url.rstrip("/")
        if f"{base}/{HF_DICT}" in found or (f"{base}/{HF_STATE}" in found and f"{base}/{HF_INFO}" in found):
            return hf_folder_source(url, files)
        index = f"{base}/index.json"
        kind = _index_kind_of(files.read_all(index)) if index in found else None
        if kind == "mds":
            from .mds import MDSSource

            return MDSSource(url, files=files)
        if kind == "litdata":
            from .litdata import LitDataSource

            return LitDataSource(url, files=files)
        paths = [p for p in found if suffix_kind(p)]
        data = [p for p in paths if not without_compression(p.lower()).endswith(".json")]
        paths = data or paths
        if not paths and any(p[len(url.rstrip("/")) + 1:].count("/") >= 1 and p.lower().endswith(tuple(IMAGE_SUFFIXES))
                             for p in found):
            from .imagefolder import ImageFolderSource

            return ImageFolderSource(url)
        if not paths:
            raise SourceError(f"{url}: found no input fastload reads from a URL ({REMOTE_KINDS})")
    elif files.exists(url):
        paths = [url]
    else:
        raise SourceError(f"{url} does not exist")
    return _files_source(paths, url, delimiter)


def _files_source(paths: list[str], what: str, delimiter: str | None) -> Source:
    kinds = {suffix_kind(p) for p in paths}
    if None in kinds:
        odd = next(p for p in paths if suffix_kind(p) is None)
        raise SourceError(f"{what}: cannot tell the format of {odd} from its suffix "
                          f"(known: {', '.join(sorted(SUFFIX_KINDS))})")
    if len(kinds) > 1:
        raise SourceError(f"{what}: mixes input formats {sorted(kinds)}; pack one format at a time")
    return _file_source(kinds.pop(), paths, delimiter)


def _index_kind(index: Path) -> str | None:
    try:
        return _index_kind_of(index.read_bytes())
    except OSError:
        return None


def _index_kind_of(data: bytes) -> str | None:
    """"mds" or "litdata" from an index.json's bytes; None for anything else."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("shards"), list):
        return "mds"
    if isinstance(body, dict) and "chunks" in body:
        return "litdata"
    return None


__all__ = ["BadRow", "Chunk", "Source", "SourceInfo", "open_source"]
