"""The exceptions fastload raises: one root, leaves that also inherit the matching builtin."""

from __future__ import annotations


class FastloadError(Exception):
    """Root of every error fastload raises on purpose."""


class FormatError(FastloadError, ValueError):
    """A dataset's bytes do not follow the format: corrupt, truncated or unknown version."""


class SchemaError(FastloadError, ValueError):
    """A schema is invalid, or a value does not fit the field it is written to."""


class SourceError(FastloadError, ValueError):
    """A pack source cannot be read: names the file and the row, line or member."""


class RecordDecodeError(FastloadError, ValueError):
    """A stored record cannot be decoded (for example a corrupt image)."""


class StorageError(FastloadError, OSError):
    """Storage cannot be reached or read after retries."""


class ConfigError(FastloadError, ValueError):
    """fastload's config file cannot be read or holds settings it does not know."""


class OutputExistsError(FastloadError, FileExistsError):
    """A pack output directory is not empty and overwrite was not asked for."""


class WorkerError(FastloadError, RuntimeError):
    """A loader or pack worker died or raised."""


class SkippedRowsError(FastloadError, ValueError):
    """A pack skipped every row, or more of them than ``max_skipped`` allows."""


class SkippedRowsWarning(UserWarning):
    """A pack skipped more than 1% of its rows (without a ``max_skipped`` limit of its own)."""


class FilterError(FastloadError, ValueError):
    """A pack filter is invalid (the message points at the column of the expression), or a
    filter function returned something other than one boolean per record."""
