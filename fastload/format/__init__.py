"""The on-disk format: schema, blocks, shards, manifest, and the dataset reader and writer."""

from .dataset import Dataset
from .manifest import Manifest
from .schema import Field, Schema
from .writer import Writer

__all__ = ["Dataset", "Field", "Manifest", "Schema", "Writer"]
