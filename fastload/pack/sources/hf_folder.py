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

from ...errors import SourceError
from .arrow_files import ArrowFileSource
from .base import SourceInfo
from .frames import class_label_metadata

STATE = "state.json"
INFO = "dataset_info.json"
DICT = "dataset_dict.json"


def is_hf_folder(path: Path) -> bool:
    return (path / DICT).is_file() or ((path / STATE).is_file() and (path / INFO).is_file())


def hf_folder_source(path: Path) -> "HfFolderSource":
    if (path / DICT).is_file():
        splits = _read_json(path / DICT).get("splits")
        if not isinstance(splits, list) or not splits:
            raise SourceError(f"{path / DICT}: lists no splits")
        if len(splits) != 1:
            raise SourceError(f"{path} is a Hugging Face DatasetDict with splits {splits}: pack one split "
                              f"at a time (fastload pack {path / str(splits[0])} OUT)")
        return hf_folder_source(path / str(splits[0]))
    return HfFolderSource(path)


class HfFolderSource(ArrowFileSource):
    """The Arrow files of a ``save_to_disk`` Dataset folder; ClassLabel names go to the metadata."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(path)
        state = _read_json(self.root / STATE)
        try:
            names = [entry["filename"] for entry in state["_data_files"]]
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{self.root / STATE}: no list of data files ({exc})") from None
        if not names or any(not isinstance(n, str) or Path(n).name != n or n in (".", "..") for n in names):
            raise SourceError(f"{self.root / STATE}: its data files must be plain file names in the folder")
        files = [str(self.root / n) for n in names]
        super().__init__(files)
        self.description = f"Hugging Face dataset (save_to_disk): {self.root} ({len(files)} files)"
        self._features = _read_json(self.root / INFO).get("features") or {}

    def info(self) -> SourceInfo:
        info = super().info()
        info.metadata = {**info.metadata, **class_label_metadata(self._features)}
        return info


def _read_json(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    if not isinstance(body, dict):
        raise SourceError(f"{path}: not a JSON object")
    return body
