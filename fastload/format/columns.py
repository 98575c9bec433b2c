"""Turn source columns (NumPy, pyarrow or Python lists) into the two stored forms, finding bad rows.

Fixed fields become one ``(n, *shape)`` array; variable fields become a :class:`VarColumn`
(``n+1`` int64 offsets into one uint8 buffer). Rows whose values do not fit their field are not
raised here: they are returned with a reason, and the caller (writer or pack driver) applies its
``on_error`` policy in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SchemaError
from .schema import Field, Schema

_IMAGE_MAGIC = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
}
_OTHER_IMAGE_MAGIC = (b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


@dataclass
class VarColumn:
    """``n`` variable-size payloads: row ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64, n + 1, offsets[0] == 0
    data: np.ndarray  # uint8

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take_range(self, start: int, stop: int) -> "VarColumn":
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return VarColumn(self.offsets[start : stop + 1] - lo, self.data[lo:hi])

    @classmethod
    def from_payloads(cls, payloads: list) -> "VarColumn":
        lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        return cls(offsets, data)


Converted = dict[str, "np.ndarray | VarColumn"]


def column_length(col: Any) -> int:
    return len(col)


def convert_columns(schema: Schema, columns: dict[str, Any], n: int) -> tuple[Converted, dict[int, str]]:
    """Convert every field's column; returns the converted columns and ``{row: reason}`` of bad rows.

    When bad rows are found, the converted columns are not meaningful: filter the source rows with
    :func:`filter_rows` and convert again.
    """
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise SchemaError(f"records lack fields {missing} of the schema ({schema.describe()})")
    extra = sorted(set(columns) - set(schema.names))
    if extra:
        raise SchemaError(f"records have fields {extra} that are not in the schema ({schema.describe()})")
    out: Converted = {}
    bad: dict[int, str] = {}
    for f in schema:
        col = columns[f.name]
        if column_length(col) != n:
            raise SchemaError(f"column {f.name!r} has {column_length(col)} rows, expected {n}")
        value, field_bad = _convert(f, col, n)
        out[f.name] = value
        for row, reason in field_bad.items():
            bad.setdefault(row, f"field {f.name!r}: {reason}")
    return out, bad


def filter_rows(columns: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """Keep the rows where ``keep`` is True, whatever each column's type."""
    out = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray):
            out[name] = col[keep]
        elif _is_arrow(col):
            import pyarrow as pa

            out[name] = col.filter(pa.array(keep))
        else:
            out[name] = [v for v, k in zip(col, keep) if k]
    return out


def row_bytes(schema: Schema, conv: Converted, n: int) -> np.ndarray:
    """Raw stored bytes of each row (fixed part + variable payloads + their offsets)."""
    sizes = np.full(n, schema.fixed_row_bytes, dtype=np.int64)
    for f in schema:
        if not f.is_fixed:
            sizes += conv[f.name].lengths() + 4
    return sizes


def slice_converted(conv: Converted, start: int, stop: int) -> Converted:
    return {
        k: (v.take_range(start, stop) if isinstance(v, VarColumn) else v[start:stop])
        for k, v in conv.items()
    }


# -- per kind ---------------------------------------------------------------------------------
def _is_arrow(col: Any) -> bool:
    return type(col).__module__.startswith("pyarrow")


def _convert(f: Field, col: Any, n: int) -> tuple[Any, dict[int, str]]:
    if _is_arrow(col):
        col = _combine(col)
        fast = _from_arrow(f, col)
        if fast is not None:
            return fast
        col = col.to_pylist()
    if f.kind == "scalar":
        return _scalar(f, col, n)
    if f.kind == "array":
        return _fixed_array(f, col, n) if f.is_fixed else _var_array(f, col, n)
    return _var_payload(f, col)


def _combine(col):
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _from_arrow(f: Field, arr) -> tuple[Any, dict[int, str]] | None:
    """Zero-copy paths for the common Arrow layouts; None means 'use the generic path'."""
    import pyarrow.types as pt

    if arr.null_count:
        return None  # the generic path names each null row
    t = arr.type
    if pt.is_dictionary(t):
        return _from_arrow(f, arr.dictionary_decode())
    if f.kind in ("str", "bytes", "image") and (
        pt.is_string(t) or pt.is_large_string(t) or pt.is_binary(t) or pt.is_large_binary(t)
    ):
        if f.kind == "image" or (f.kind == "str" and (pt.is_binary(t) or pt.is_large_binary(t))):
            return None  # needs per-value validation
        off_type = np.int64 if (pt.is_large_string(t) or pt.is_large_binary(t)) else np.int32
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
        offsets = offsets.astype(np.int64)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        data = data[offsets[0] : offsets[-1]]
        return VarColumn(offsets - offsets[0], data), {}
    if f.kind == "scalar" and (pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t)):
        return _scalar(f, arr.to_numpy(zero_copy_only=False), len(arr))
    if f.kind == "array" and f.is_fixed and pt.is_fixed_size_list(t):
        flat, shape = arr, []
        while pt.is_fixed_size_list(flat.type):
            shape.append(flat.type.list_size)
            flat = flat.flatten()
        if tuple(shape) != f.shape or flat.null_count:
            return None
        values = flat.to_numpy(zero_copy_only=False).reshape((len(arr), *shape))
        try:
            return _cast(f, values, values.shape[0])
        except TypeError:
            return None  # non-numeric elements: the generic path names each bad row
    if f.kind == "array" and len(f.shape) == 1 and (pt.is_list(t) or pt.is_large_list(t)):
        if not (pt.is_integer(t.value_type) or pt.is_floating(t.value_type)) or arr.values.null_count:
            return None  # null elements: the generic path names the row
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
        if f.is_fixed:  # a plain list column feeding a fixed-shape field: every row must have shape[0]
            if not (np.diff(offsets) == f.shape[0]).all():
                return None
            return _cast(f, values.reshape(len(arr), f.shape[0]), len(arr))
        cast, bad = _cast(f, values, None)
        if bad:
            return None
        itemsize = f.np_dtype.itemsize
        return VarColumn((offsets - offsets[0]) * itemsize, cast.view(np.uint8).reshape(-1)), {}
    return None


def _cast(f: Field, values: np.ndarray, n: int | None) -> tuple[np.ndarray, dict[int, str]]:
    """Cast numeric values to the field's dtype; rows that would change value are bad."""
    target = f.np_dtype
    values = np.asarray(values)
    if values.dtype == target:
        return np.ascontiguousarray(values), {}
    if values.dtype.kind not in "biuf":
        raise TypeError(f"non-numeric values ({values.dtype})")
    out = values.astype(target)
    if target.kind in "biu":
        with np.errstate(invalid="ignore", over="ignore"):
            back = out.astype(values.dtype) if values.dtype.kind != "b" else out.astype(bool)
            # the sign test catches same-width signed/unsigned wraps (-1 -> uint64 max -> -1)
            ok = (back == values) & ((out < 0) == (values < 0))
        if not ok.all():
            rows = ok.reshape(len(ok), -1).all(axis=1) if n is not None and ok.ndim > 1 else ok
            if n is None:
                return out, {0: "value does not fit"}
            return out, {int(i): f"value does not fit {f.dtype}" for i in np.flatnonzero(~rows)}
    return np.ascontiguousarray(out), {}


def _scalar(f: Field, col: Any, n: int) -> tuple[np.ndarray, dict[int, str]]:
    if isinstance(col, np.ndarray) and col.dtype.kind in "biuf":
        if col.ndim != 1:
            col = col.reshape(n, -1)
            if col.shape[1] != 1:
                return np.zeros(n, f.np_dtype), {0: f"expected a scalar, got shape {col.shape[1:]}"}
            col = col[:, 0]
        try:
            return _cast(f, col, n)
        except TypeError as exc:
            return np.zeros(n, f.np_dtype), {0: str(exc)}
    out = np.zeros(n, dtype=f.np_dtype)
    bad: dict[int, str] = {}
    for i, v in enumerate(col):
        if v is None:
            bad[i] = "missing value (null)"
            continue
        if isinstance(v, (str, bytes, list, dict, tuple)):
            bad[i] = f"expected a number, got {type(v).__name__}"
            continue
        try:
            one, sub = _cast(f, np.asarray([v]), 1)
        except TypeError as exc:
            bad[i] = str(exc)
            continue
        if sub:
            bad[i] = f"value {v!r} does not fit {f.dtype}"
            continue
        out[i] = one[0]
    return out, bad


def _fixed_array(f: Field, col: Any, n: int) -> tuple[np.ndarray, dict[int, str]]:
    if isinstance(col, np.ndarray) and col.dtype.kind in "biuf" and col.shape == (n, *f.shape):
        try:
            return _cast(f, col, n)
        except TypeError as exc:
            return np.zeros((n, *f.shape), f.np_dtype), {0: str(exc)}
    out = np.zeros((n, *f.shape), dtype=f.np_dtype)
    bad: dict[int, str] = {}
    for i, v in enumerate(col):
        if v is None:
            bad[i] = "missing value (null)"
            continue
        try:
            a = np.asarray(v)
            if a.shape != f.shape:
                bad[i] = f"array of shape {list(a.shape)} where the schema declares {list(f.shape)}"
                continue
            cast, sub = _cast(f, a.reshape(1, *a.shape), 1)
        except (TypeError, ValueError) as exc:
            bad[i] = f"not a numeric array ({exc})"
            continue
        if sub:
            bad[i] = f"values do not fit {f.dtype}"
            continue
        out[i] = cast[0]
    return out, bad


def _var_array(f: Field, col: Any, n: int) -> tuple[VarColumn, dict[int, str]]:
    payloads: list[bytes] = []
    bad: dict[int, str] = {}
    ndim = len(f.shape)
    for i, v in enumerate(col):
        if v is None:
            bad[i] = "missing value (null)"
            payloads.append(b"")
            continue
        try:
            a = np.asarray(v)
            if a.size == 0 and a.ndim == 1 and ndim > 1:
                # an empty list ([] from Python or Arrow) is zero rows: give it the field's rank
                a = a.reshape(tuple(0 if d == -1 else d for d in f.shape))
            if a.ndim != ndim or any(d != -1 and d != s for d, s in zip(f.shape, a.shape)):
                bad[i] = f"array of shape {list(a.shape)} does not match the schema's {list(f.shape)}"
                payloads.append(b"")
                continue
            cast, sub = _cast(f, a.reshape(1, *a.shape), 1)
        except (TypeError, ValueError) as exc:
            bad[i] = f"not a numeric array ({exc})"
            payloads.append(b"")
            continue
        if sub:
            bad[i] = f"values do not fit {f.dtype}"
        prefix = np.asarray(a.shape, dtype="<i8").tobytes() if ndim > 1 else b""
        payloads.append(prefix + np.ascontiguousarray(cast[0]).tobytes())
    return VarColumn.from_payloads(payloads), bad


def _var_payload(f: Field, col: Any) -> tuple[VarColumn, dict[int, str]]:
    payloads: list[bytes] = []
    bad: dict[int, str] = {}
    for i, v in enumerate(col):
        try:
            payloads.append(_encode_value(f, v))
        except (ValueError, TypeError) as exc:
            bad[i] = str(exc)
            payloads.append(b"")
    return VarColumn.from_payloads(payloads), bad


def _encode_value(f: Field, v: Any) -> bytes:
    if f.kind == "json":
        try:
            return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not JSON-serializable ({exc})") from None
    if v is None:
        raise ValueError("missing value (null)")
    if f.kind == "str":
        if isinstance(v, str):
            try:
                return v.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"string is not valid Unicode ({exc.reason})") from None
        if isinstance(v, (bytes, bytearray, memoryview)):
            b = bytes(v)
            try:
                b.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"string is not valid UTF-8 (byte {exc.start})") from None
            return b
        raise TypeError(f"expected str, got {type(v).__name__}")
    if isinstance(v, np.ndarray):
        v = v.tobytes()
    if isinstance(v, str) and f.kind == "bytes":
        return v.encode("utf-8")
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    b = bytes(v)
    if f.kind == "image":
        check_image_magic(b, f.image_format or "any")
    return b


def check_image_magic(b: bytes, image_format: str) -> None:
    """Raise ValueError when ``b`` does not start like an encoded image of the given format."""
    if image_format in _IMAGE_MAGIC:
        if not b.startswith(_IMAGE_MAGIC[image_format]):
            raise ValueError(f"not a {image_format.upper()} image (bad magic bytes)")
        return
    known = sum(_IMAGE_MAGIC.values(), ()) + _OTHER_IMAGE_MAGIC
    if not (b.startswith(known) or (b[:4] == b"RIFF" and b[8:12] == b"WEBP")):
        raise ValueError("not an encoded image (unknown magic bytes)")
