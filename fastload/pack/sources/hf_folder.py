"""A Hugging Face ``datasets`` folder written by ``save_to_disk``, read without the library.

A ``Dataset`` folder holds ``state.json`` (its Arrow stream files, in order), ``dataset_info.json``
(its features) and the ``data-XXXXX-of-NNNNN.arrow`` files; ``save_to_disk`` has already applied
any selection or shuffle. A ``DatasetDict`` folder holds ``dataset_dict.json`` and one such folder
per split: a single split is packed, several must be packed one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import SourceError, StorageError
from .arrow_files import ArrowFileSource
from .base import SourceInfo
from .files import InputFiles, is_url
from .frames import class_label_metadata

STATE = "state.json"
INFO = "dataset_info.json"
DICT = "dataset_dict.json"


def is_hf_folder(path: Path) -> bool:
    return (path / DICT).is_file() or ((path / STATE).is_file() and (path / INFO).is_file())


def _join(root: str, name: str) -> str:
    """``root/name`` for a local path or a URL (pathlib would fold a URL's ``//``)."""
    return f"{root.rstrip('/')}/{name}" if is_url(root) else str(Path(root) / name)


def hf_folder_source(path: str | Path, files: InputFiles | None = None) -> "HfFolderSource":
    root, files = str(path), files or InputFiles()
    if is_url(root) and files.exists(_join(root, DICT)) or not is_url(root) and Path(root, DICT).is_file():
        splits = _read_json(_join(root, DICT), files).get("splits")
        if not isinstance(splits, list) or not splits:
            raise SourceError(f"{_join(root, DICT)}: lists no splits")
        if len(splits) != 1:
            raise SourceError(f"{root} is a Hugging Face DatasetDict with splits {splits}: pack one split "
                              f"at a time (fastload pack {_join(root, str(splits[0]))} OUT)")
        return hf_folder_source(_join(root, str(splits[0])), files)
    return HfFolderSource(root, files=files)


class HfFolderSource(ArrowFileSource):
    """The Arrow files of a ``save_to_disk`` Dataset folder; ClassLabel names go to the metadata."""

    def __init__(self, path: str | Path, *, files: InputFiles | None = None) -> None:
        self.root = str(path)
        files = files or InputFiles()
        state = _read_json(_join(self.root, STATE), files)
        try:
            names = [entry["filename"] for entry in state["_data_files"]]
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{_join(self.root, STATE)}: no list of data files ({exc})") from None
        if not names or any(not isinstance(n, str) or Path(n).name != n or n in (".", "..") for n in names):
            raise SourceError(f"{_join(self.root, STATE)}: its data files must be plain file names in the folder")
        data = [_join(self.root, n) for n in names]
        super().__init__(data)
        self.use_files(files)
        self.description = f"Hugging Face dataset (save_to_disk): {self.root} ({len(data)} files)"
        self._features = _read_json(_join(self.root, INFO), files).get("features") or {}

    def info(self) -> SourceInfo:
        info = super().info()
        info.metadata = {**info.metadata, **class_label_metadata(self._features)}
        return info


def _read_json(path: str, files: InputFiles) -> dict[str, Any]:
    try:
        body = json.loads(files.read_all(path))
    except StorageError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise
        raise SourceError(f"{path}: cannot read: no such file") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    if not isinstance(body, dict):
        raise SourceError(f"{path}: not a JSON object")
    return body
