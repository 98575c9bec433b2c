"""fastload: a sharded record format, a converter, and a loader that keeps accelerators fed."""

from .errors import (
    FastloadError, FormatError, OutputExistsError, RecordDecodeError, SchemaError, SourceError,
    StorageError, WorkerError,
)
from .format import Dataset, Field, Manifest, Schema, Writer
from .format import open_dataset as open

__version__ = "0.1.0"

# Bound after the subpackage is imported, so ``fastload.pack`` stays the function.
from .pack.driver import pack  # noqa: E402


__all__ = [
    "Dataset", "FastloadError", "Field", "FormatError", "Manifest", "OutputExistsError",
    "RecordDecodeError", "Schema", "SchemaError", "SourceError", "StorageError", "WorkerError",
    "Writer", "open", "pack",
]
