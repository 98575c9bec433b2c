"""fastload: a sharded record format, a converter, and a loader that keeps accelerators fed."""

from .errors import (
    FastloadError, FormatError, OutputExistsError, RecordDecodeError, SchemaError, SourceError,
    StorageError, WorkerError,
)
from .format import Dataset, Field, Manifest, Schema, Writer
from .format import open_dataset as open

__version__ = "0.1.0"


def pack(source, out, **options):
    """Convert ``source`` into a fastload dataset at ``out`` (see :func:`fastload.pack.pack`)."""
    from .pack.driver import pack as _pack

    return _pack(source, out, **options)


__all__ = [
    "Dataset", "FastloadError", "Field", "FormatError", "Manifest", "OutputExistsError",
    "RecordDecodeError", "Schema", "SchemaError", "SourceError", "StorageError", "WorkerError",
    "Writer", "open", "pack",
]
