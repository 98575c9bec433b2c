"""Typed fields of a dataset: what each stores, its byte width, and its JSON and text forms.

A field is either *fixed* (the same number of bytes in every record: numeric scalars and
fixed-shape arrays), stored as a dense column, or *variable* (str, bytes, json, image and arrays
with a variable dimension), stored as offsets plus data.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np

from ..errors import SchemaError
from .logical import Logical, parse_logical
from .schema_text import format_name, parse_overrides, parse_renames
from .spec import MAX_BLOCK_RAW, MAX_FIELDS, MAX_NDIM

__all__ = ["Field", "Schema", "format_name", "parse_overrides", "parse_renames", "encode_arrow_type",
           "decode_arrow_type", "NUMERIC_DTYPES", "KINDS", "IMAGE_FORMATS", "VALID_SUFFIX"]

NUMERIC_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)
KINDS = ("scalar", "array", "str", "bytes", "json", "image", "null", "arrow")
IMAGE_FORMATS = ("jpeg", "png", "any")
MAX_NAME_BYTES = 1024  # a name is any non-empty Unicode string up to this many UTF-8 bytes
MAX_ARROW_TYPE_CHARS = 65536  # base64 of a nested field's Arrow schema
MAX_ARROW_DEPTH = 64  # nesting levels of a nested field's Arrow type
VALID_SUFFIX = ".valid"  # batches carry a nullable field's validity under name + VALID_SUFFIX
_SPEC_RE = re.compile(r"^\s*([a-z0-9]+)\s*(?:\[\s*([-0-9a-z,\s]*)\s*\])?\s*$")


@dataclass(frozen=True)
class Field:
    """One named, typed column of a dataset.

    ``logical`` names the Arrow type a scalar or array stores in numeric form (a timestamp as
    int64, a decimal as 16 bytes; see :mod:`.logical`). ``arrow_type`` is the exact Arrow type of
    a nested (``arrow``) field. ``nullable`` is a fact about a written dataset, set from its
    manifest: at least one record holds null in this field.
    """

    name: str
    kind: str
    dtype: str | None = None  # numeric dtype for scalar/array
    shape: tuple[int, ...] = ()  # array shape; -1 marks a variable dimension
    image_format: str | None = None  # for kind="image"
    logical: str | None = None  # for scalar/array: the Arrow logical type of the stored numbers
    arrow_type: str | None = None  # for kind="arrow": base64 of the Arrow IPC schema of one field
    nullable: bool = False
    _arrow: Any = field(default=None, init=False, repr=False, compare=False)
    _logical: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kind not in KINDS:
            raise SchemaError(f"field {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if self.kind in ("scalar", "array"):
            if self.dtype not in NUMERIC_DTYPES:
                raise SchemaError(
                    f"field {self.name!r}: dtype {self.dtype!r} is not one of {NUMERIC_DTYPES}"
                )
        elif self.dtype is not None:
            raise SchemaError(f"field {self.name!r}: kind {self.kind!r} takes no dtype")
        if not isinstance(self.shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in self.shape):
            raise SchemaError(f"field {self.name!r}: shape {self.shape!r} must hold integers (a list of sizes)")
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
        self._check_logical()
        self._check_arrow_type()
        if not isinstance(self.nullable, bool):
            raise SchemaError(f"field {self.name!r}: nullable must be true or false")

    def _check_logical(self) -> None:
        if self.logical is None:
            return
        lt = parse_logical(self.logical) if isinstance(self.logical, str) else None
        if lt is None or lt.text != self.logical:
            raise SchemaError(f"field {self.name!r}: unknown logical type {self.logical!r}")
        want_kind = "array" if lt.shape else "scalar"
        if (self.kind, self.dtype, self.shape) != (want_kind, lt.dtype, lt.shape):
            raise SchemaError(f"field {self.name!r}: {lt.text} is stored as "
                              f"{lt.dtype}{list(lt.shape) if lt.shape else ''}, not {self._physical_spec}")
        object.__setattr__(self, "_logical", lt)

    def _check_arrow_type(self) -> None:
        if self.kind != "arrow":
            if self.arrow_type is not None:
                raise SchemaError(f"field {self.name!r}: only arrow fields have an arrow_type")
            return
        object.__setattr__(self, "_arrow", decode_arrow_type(self.name, self.arrow_type))

    # -- layout ---------------------------------------------------------------------------
    @property
    def is_fixed(self) -> bool:
        """True when every record stores the same number of bytes for this field."""
        if self.kind in ("scalar", "null"):
            return True
        return self.kind == "array" and -1 not in self.shape

    @property
    def is_dense(self) -> bool:
        """True when a batch of this field is one ``(n, *shape)`` array of its dtype: a fixed
        numeric field without nulls (temporal values as their stored integers, not decimals)."""
        if self.kind not in ("scalar", "array") or self.nullable or not self.is_fixed:
            return False
        return self._logical is None or self._logical.is_temporal

    @property
    def np_dtype(self) -> np.dtype:
        if self.dtype is None:
            raise SchemaError(f"field {self.name!r} of kind {self.kind!r} has no numeric dtype")
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def itemsize(self) -> int:
        """Bytes per record of a fixed field (0 for a null field, which stores nothing)."""
        if not self.is_fixed:
            raise SchemaError(f"field {self.name!r} is variable-size")
        if self.kind == "null":
            return 0
        return self.np_dtype.itemsize * math.prod(self.shape)  # at most MAX_BLOCK_RAW (checked above)

    @property
    def logical_type(self) -> Logical | None:
        """The parsed logical type (None without one)."""
        return self._logical

    @property
    def pa_type(self) -> Any:
        """The exact Arrow type of a nested (``arrow``) field."""
        if self._arrow is None:
            raise SchemaError(f"field {self.name!r} of kind {self.kind!r} has no nested Arrow type")
        return self._arrow

    # -- text and JSON forms -----------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The short text form used by `--schema`, e.g. ``uint16[2049]``; nested fields show
        their Arrow type (``arrow<struct<a: int64>>``), which the text form cannot give."""
        if self.logical is not None:
            return self.logical
        if self.kind == "arrow":
            return f"arrow<{self._arrow}>"
        return self._physical_spec

    @property
    def _physical_spec(self) -> str:
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
        if self.logical is not None:
            out["logical"] = self.logical
        if self.arrow_type is not None:
            out["arrow_type"] = self.arrow_type
        if self.nullable:
            out["nullable"] = True
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
                shape=obj.get("shape", ()),
                image_format=obj.get("image_format"),
                logical=obj.get("logical"),
                arrow_type=obj.get("arrow_type"),
                nullable=obj.get("nullable", False),
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed field description {_short(obj)}: {exc}") from None

    @classmethod
    def parse(cls, name: str, spec: str) -> "Field":
        """Build a field from its short text form: ``int64``, ``float32[-1,80]``, ``str``,
        ``image[jpeg]``, ``null``, or a logical type (``timestamp[ms, tz=UTC]``, ``date32``,
        ``decimal128(10, 2)``)."""
        try:
            logical = parse_logical(spec)
        except SchemaError as exc:
            raise SchemaError(f"field {name!r}: {exc}") from None
        if logical is not None:
            return cls(name, "array" if logical.shape else "scalar", dtype=logical.dtype,
                       shape=logical.shape, logical=logical.text)
        m = _SPEC_RE.match(spec.lower())
        if not m:
            raise SchemaError(f"field {name!r}: cannot parse type {spec!r}")
        base, dims = m.group(1), m.group(2)
        if base in ("str", "bytes", "json", "null"):
            if dims is not None:
                raise SchemaError(f"field {name!r}: {base} takes no [shape]")
            return cls(name, base)
        if base == "image":
            return cls(name, "image", image_format=(dims or "any").strip() or "any")
        if base not in NUMERIC_DTYPES:
            raise SchemaError(
                f"field {name!r}: unknown type {base!r}; valid: {NUMERIC_DTYPES + TEXT_TYPES}"
            )
        if dims is None:
            return cls(name, "scalar", dtype=base)
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise SchemaError(f"field {name!r}: bad shape in {spec!r}") from None
        return cls(name, "array", dtype=base, shape=shape)


TEXT_TYPES = ("str", "bytes", "json", "image", "null", "date32", "date64", "time32[ms]", "time64[us]",
              "timestamp[us]", "timestamp[us, tz=UTC]", "duration[us]", "decimal128(p, s)")


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
        taken = set(names)
        clash = [n for n in names if n.endswith(VALID_SUFFIX) and n[: -len(VALID_SUFFIX)] in taken]
        if clash:
            raise SchemaError(
                f"field names {clash} clash with the validity of fields "
                f"{[n[: -len(VALID_SUFFIX)] for n in clash]} in batches (key name + {VALID_SUFFIX!r}); "
                "rename one (fastload pack --rename OLD=NEW)"
            )

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
        """Parse ``name:type,name:type`` (types as in :meth:`Field.parse`, names as in
        :func:`parse_overrides`)."""
        return cls(tuple(Field.parse(n, t) for n, t in parse_overrides(text).items()))

    def with_overrides(self, overrides: dict[str, str]) -> "Schema":
        """Replace the types of named fields (``{"tokens": "uint16[2049]"}``)."""
        unknown = sorted(set(overrides) - set(self.names))
        if unknown:
            raise SchemaError(f"--schema names unknown fields {unknown}; the source has {self.names}")
        return Schema(tuple(Field.parse(f.name, overrides[f.name]) if f.name in overrides else f
                            for f in self.fields))

    def renamed(self, mapping: dict[str, str]) -> "Schema":
        """The same fields with some renamed (``{"sepal length (cm)": "sepal_length"}``)."""
        unknown = sorted(set(mapping) - set(self.names))
        if unknown:
            raise SchemaError(f"--rename names unknown fields {unknown}; the source has {self.names}")
        return Schema(tuple(replace(f, name=mapping.get(f.name, f.name)) for f in self.fields))

    def with_nullable(self, names: Iterable[str]) -> "Schema":
        """The schema with exactly the fields ``names`` marked nullable."""
        marked = set(names)
        if all(f.nullable == (f.name in marked) for f in self.fields):
            return self  # Schema and Field are frozen: nothing to copy
        return Schema(tuple(replace(f, nullable=f.name in marked) for f in self.fields))

    def without_nullable(self) -> "Schema":
        """The schema as a shard header stores it: types only, no dataset-level null facts."""
        return self.with_nullable(())

    def describe(self) -> str:
        return ", ".join(f"{format_name(f.name)}: {f.spec}" for f in self.fields)


def _short(obj: Any) -> str:
    """A repr for messages, cut short (a crafted description may be megabytes long)."""
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


# -- names ------------------------------------------------------------------------------------------
def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise SchemaError(f"invalid field name {name!r}: a name is a non-empty string")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise SchemaError(f"invalid field name {name!r}: not valid Unicode (a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise SchemaError(f"invalid field name {name[:40]!r}...: {size} bytes in UTF-8, "
                          f"at most {MAX_NAME_BYTES}")


# -- nested (arrow) fields ----------------------------------------------------------------------
def encode_arrow_type(typ: Any) -> str:
    """The schema's text for a nested Arrow type: base64 of the IPC schema of one field ``item``."""
    import pyarrow as pa

    return base64.b64encode(pa.schema([pa.field("item", typ)]).serialize().to_pybytes()).decode("ascii")


def decode_arrow_type(name: str, text: Any) -> Any:
    """The Arrow type a nested field's ``arrow_type`` holds; a SchemaError if it is not one."""
    if not isinstance(text, str) or not text or len(text) > MAX_ARROW_TYPE_CHARS:
        raise SchemaError(f"field {name!r}: arrow_type must be a base64 Arrow schema of at most "
                          f"{MAX_ARROW_TYPE_CHARS} characters")
    import pyarrow as pa

    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text, validate=True)))
    except (ValueError, pa.ArrowException) as exc:
        raise SchemaError(f"field {name!r}: arrow_type is not an Arrow schema ({exc})") from None
    if len(schema) != 1:
        raise SchemaError(f"field {name!r}: arrow_type must describe exactly one Arrow field")
    typ = schema.field(0).type
    if _depth(typ) > MAX_ARROW_DEPTH:
        raise SchemaError(f"field {name!r}: Arrow type nested deeper than {MAX_ARROW_DEPTH} levels")
    return typ


def _depth(typ: Any) -> int:
    children = [typ.field(i).type for i in range(getattr(typ, "num_fields", 0))]
    return 1 + max((_depth(c) for c in children), default=0)
