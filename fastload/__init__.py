"""fastload: a sharded record format, a converter, and a loader that keeps accelerators fed."""

from .errors import (
    FastloadError, FormatError, OutputExistsError, RecordDecodeError, SchemaError, SkippedRowsError,
    SkippedRowsWarning, SourceError, StorageError, WorkerError,
)
from .format import Dataset, Field, Manifest, Schema, Writer
from .opening import open_dataset as open

__version__ = "0.1.0"


def __getattr__(name: str):
    # The loader imports torch (~1.5 s); load it only when asked for, so packing and reading don't pay.
    if name in ("DataLoader", "copy_batch", "Pad"):
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'fastload' has no attribute {name!r}")

# Bound after the subpackage is imported, so ``fastload.pack`` stays the function.
from .pack.driver import pack  # noqa: E402
from .lm import mix, pack_sequences  # noqa: E402


__all__ = [
    "Dataset", "FastloadError", "Field", "FormatError", "Manifest", "OutputExistsError",
    "RecordDecodeError", "Schema", "SchemaError", "SkippedRowsError", "SkippedRowsWarning", "SourceError",
    "StorageError", "WorkerError",
    "Writer", "mix", "open", "pack", "pack_sequences", "DataLoader", "copy_batch", "Pad",
]
