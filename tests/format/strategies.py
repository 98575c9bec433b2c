"""Hypothesis strategies for fields, schemas and the values each field kind stores."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastload import Field, Schema
from fastload.format.schema import IMAGE_FORMATS, NUMERIC_DTYPES

# any non-empty Unicode text: spaces, punctuation, quotes, brackets, leading digits
names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10)
dtypes = st.sampled_from(NUMERIC_DTYPES)
shapes = st.lists(st.one_of(st.integers(1, 4), st.just(-1)), min_size=1, max_size=3).map(tuple)

IMAGE_MAGIC = {
    "jpeg": [b"\xff\xd8\xff"],
    "png": [b"\x89PNG\r\n\x1a\n"],
    "any": [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"],
}


@st.composite
def fields(draw, name=None) -> Field:
    """Any valid field: scalar, fixed or variable array, str, bytes, json or image."""
    name = draw(names) if name is None else name
    kind = draw(st.sampled_from(["scalar", "array", "str", "bytes", "json", "image"]))
    if kind == "scalar":
        return Field(name, kind, dtype=draw(dtypes))
    if kind == "array":
        return Field(name, kind, dtype=draw(dtypes), shape=draw(shapes))
    if kind == "image":
        return Field(name, kind, image_format=draw(st.sampled_from(IMAGE_FORMATS)))
    return Field(name, kind)


@st.composite
def schemas(draw, max_fields: int = 5) -> Schema:
    field_names = draw(st.lists(names, min_size=1, max_size=max_fields, unique=True)
                       .filter(lambda ns: not any(n + ".valid" in ns for n in ns)))
    return Schema(tuple(draw(fields(name=n)) for n in field_names))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def values(f: Field) -> st.SearchStrategy:
    """Values a record may hold for field ``f`` (NumPy scalars and arrays for numeric fields)."""
    if f.kind == "scalar":
        return hnp.from_dtype(np.dtype(f.dtype))
    if f.kind == "array":
        concrete = st.tuples(*(st.integers(0, 3) if d == -1 else st.just(d) for d in f.shape))
        return concrete.flatmap(lambda shape: hnp.arrays(np.dtype(f.dtype), shape))
    if f.kind == "str":
        return st.text(max_size=12)
    if f.kind == "bytes":
        return st.binary(max_size=40)
    if f.kind == "json":
        return json_values
    magic = st.sampled_from(IMAGE_MAGIC[f.image_format])
    return st.tuples(magic, st.binary(max_size=30)).map(lambda parts: parts[0] + parts[1])


def records(schema: Schema, max_size: int = 30) -> st.SearchStrategy:
    return st.lists(st.fixed_dictionaries({f.name: values(f) for f in schema}), max_size=max_size)
