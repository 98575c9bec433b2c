"""Typed fields of a dataset: what each stores, its byte width, and its JSON and text forms.

A field is either *fixed* (the same number of bytes in every record: numeric scalars and
fixed-shape arrays), stored as a dense column, or *variable* (str, bytes, json, image and arrays
with a variable dimension), stored as offsets plus data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import SchemaError
from .spec import MAX_BLOCK_RAW, MAX_FIELDS, MAX_NDIM

NUMERIC_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)
KINDS = ("scalar", "array", "str", "bytes", "json", "image")
IMAGE_FORMATS = ("jpeg", "png", "any")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_SPEC_RE = re.compile(r"^\s*([a-z0-9]+)\s*(?:\[\s*([-0-9a-z,\s]*)\s*\])?\s*$")


@dataclass(frozen=True)
class Field:
    """One named, typed column of a dataset."""

    name: str
    kind: str
    dtype: str | None = None  # numeric dtype for scalar/array
    shape: tuple[int, ...] = ()  # array shape; -1 marks a variable dimension
    image_format: str | None = None  # for kind="image"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise SchemaError(
                f"invalid field name {self.name!r}: use letters, digits, '_', '.', '-' "
                "and start with a letter or '_'"
            )
        if self.kind not in KINDS:
            raise SchemaError(f"field {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if self.kind in ("scalar", "array"):
            if self.dtype not in NUMERIC_DTYPES:
                raise SchemaError(
                    f"field {self.name!r}: dtype {self.dtype!r} is not one of {NUMERIC_DTYPES}"
                )
        elif self.dtype is not None:
            raise SchemaError(f"field {self.name!r}: kind {self.kind!r} takes no dtype")
        if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in self.shape):
            raise SchemaError(f"field {self.name!r}: shape {list(self.shape)} must hold integers")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.kind == "array":
            if not 1 <= len(self.shape) <= MAX_NDIM:
                raise SchemaError(f"field {self.name!r}: an array needs a shape of 1 to {MAX_NDIM} sizes, "
                                  "e.g. [2049] or [-1]")
            if any(d < -1 or d == 0 for d in self.shape):
                raise SchemaError(
                    f"field {self.name!r}: shape {list(self.shape)} must hold positive sizes or -1"
                )
            # Python integers: a product that wraps in int64 must not pass as a small itemsize
            fixed_bytes = np.dtype(self.dtype).itemsize * math.prod(d for d in self.shape if d != -1)
            if fixed_bytes > MAX_BLOCK_RAW:
                raise SchemaError(f"field {self.name!r}: shape {list(self.shape)} gives records of "
                                  f"{fixed_bytes} bytes; a block holds at most {MAX_BLOCK_RAW}")
        elif self.shape:
            raise SchemaError(f"field {self.name!r}: only arrays have a shape")
        if self.kind == "image":
            fmt = self.image_format or "any"
            if fmt not in IMAGE_FORMATS:
                raise SchemaError(
                    f"field {self.name!r}: image format {fmt!r} is not one of {IMAGE_FORMATS}"
                )
            object.__setattr__(self, "image_format", fmt)
        elif self.image_format is not None:
            raise SchemaError(f"field {self.name!r}: only images have an image_format")

    # -- layout ---------------------------------------------------------------------------
    @property
    def is_fixed(self) -> bool:
        """True when every record stores the same number of bytes for this field."""
        if self.kind == "scalar":
            return True
        return self.kind == "array" and -1 not in self.shape

    @property
    def np_dtype(self) -> np.dtype:
        if self.dtype is None:
            raise SchemaError(f"field {self.name!r} of kind {self.kind!r} has no numeric dtype")
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def itemsize(self) -> int:
        """Bytes per record of a fixed field."""
        if not self.is_fixed:
            raise SchemaError(f"field {self.name!r} is variable-size")
        return self.np_dtype.itemsize * math.prod(self.shape)  # at most MAX_BLOCK_RAW (checked above)

    # -- text and JSON forms -----------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The short text form used by `--schema`, e.g. ``uint16[2049]``."""
        if self.kind == "scalar":
            return str(self.dtype)
        if self.kind == "array":
            return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"
        if self.kind == "image" and self.image_format != "any":
            return f"image[{self.image_format}]"
        return self.kind

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.shape:
            out["shape"] = list(self.shape)
        if self.image_format is not None:
            out["image_format"] = self.image_format
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Field":
        if not isinstance(obj, dict) or not isinstance(obj.get("shape", []), list):
            raise SchemaError(f"malformed field description {_short(obj)}: expected an object with a list shape")
        try:
            return cls(
                name=obj["name"],
                kind=obj["kind"],
                dtype=obj.get("dtype"),
                shape=tuple(obj.get("shape", ())),
                image_format=obj.get("image_format"),
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed field description {_short(obj)}: {exc}") from None

    @classmethod
    def parse(cls, name: str, spec: str) -> "Field":
        """Build a field from its short text form: ``int64``, ``float32[-1,80]``, ``str``, ``image[jpeg]``."""
        m = _SPEC_RE.match(spec.lower())
        if not m:
            raise SchemaError(f"field {name!r}: cannot parse type {spec!r}")
        base, dims = m.group(1), m.group(2)
        if base in ("str", "bytes", "json"):
            if dims is not None:
                raise SchemaError(f"field {name!r}: {base} takes no [shape]")
            return cls(name, base)
        if base == "image":
            return cls(name, "image", image_format=(dims or "any").strip() or "any")
        if base not in NUMERIC_DTYPES:
            raise SchemaError(
                f"field {name!r}: unknown type {base!r}; valid: {NUMERIC_DTYPES + ('str', 'bytes', 'json', 'image')}"
            )
        if dims is None:
            return cls(name, "scalar", dtype=base)
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise SchemaError(f"field {name!r}: bad shape in {spec!r}") from None
        return cls(name, "array", dtype=base, shape=shape)


@dataclass(frozen=True)
class Schema:
    """The ordered fields of a dataset."""

    fields: tuple[Field, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields:
            raise SchemaError("a schema needs at least one field")
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate field names: {dupes}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)

    def __iter__(self):
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def fixed_row_bytes(self) -> int:
        return sum(f.itemsize for f in self.fields if f.is_fixed)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.fields]

    @classmethod
    def from_json(cls, obj: Iterable[dict[str, Any]]) -> "Schema":
        if not isinstance(obj, list) or len(obj) > MAX_FIELDS:
            raise SchemaError(f"a schema is a list of at most {MAX_FIELDS} field descriptions, not {_short(obj)}")
        return cls(tuple(Field.from_json(o) for o in obj))

    @classmethod
    def parse(cls, text: str) -> "Schema":
        """Parse ``name:type,name:type`` (types as in :meth:`Field.parse`)."""
        return cls(tuple(Field.parse(n, t) for n, t in parse_overrides(text).items()))

    def with_overrides(self, overrides: dict[str, str]) -> "Schema":
        """Replace the types of named fields (``{"tokens": "uint16[2049]"}``)."""
        unknown = sorted(set(overrides) - set(self.names))
        if unknown:
            raise SchemaError(f"--schema names unknown fields {unknown}; the source has {self.names}")
        return Schema(tuple(Field.parse(f.name, overrides[f.name]) if f.name in overrides else f
                            for f in self.fields))

    def describe(self) -> str:
        return ", ".join(f"{f.name}: {f.spec}" for f in self.fields)


def _short(obj: Any) -> str:
    """A repr for messages, cut short (a crafted description may be megabytes long)."""
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_overrides(text: str | dict[str, str] | None) -> dict[str, str]:
    """``"a:int64,b:uint16[-1,3]"`` -> ``{"a": "int64", "b": "uint16[-1,3]"}`` (commas inside [] kept)."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, str] = {}
    depth, cur = 0, []
    parts = []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    for part in parts:
        if not part.strip():
            continue
        name, sep, spec = part.partition(":")
        if not sep and "=" in part:
            name, _, spec = part.partition("=")
        elif not sep:
            raise SchemaError(f"--schema entry {part!r} must be name:type")
        out[name.strip()] = spec.strip()
    return out
