"""Shared test helpers for the cleaning tests."""

from __future__ import annotations


class Nullable(dict):
    """Converted columns with null masks (``valid``: True = a value), as nullable fields carry them."""

    def __init__(self, columns, valid):
        super().__init__(columns)
        self.valid = valid
