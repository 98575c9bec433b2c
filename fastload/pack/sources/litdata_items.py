"""Decode the items of a LitData chunk: serializer leaves, dtype numbering, compact nested JSON.

Split from litdata.py, which reads index files and chunks; see its docstring for the format.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from .mds import pil_raw_to_array

# index -> dtype of litdata's numpy serializers ("numpy" header, "no_header_numpy:I")
_NUMPY_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64")  # then complex, bool, object...: see _NUMPY_EXTRA
_NUMPY_EXTRA = {13: "bool"}
# index -> dtype of litdata's torch serializers ("tensor" header, "no_header_tensor:I")
_TORCH_DTYPES = {
    0: "float32", 1: "float32", 2: "float64", 3: "float64", 8: "float16", 9: "float16",
    11: "uint8", 12: "int8", 13: "int16", 14: "int16", 15: "int32", 16: "int32", 17: "int64",
    18: "int64", 19: "bool", 20: "uint16",
}


def numpy_dtype(index: int) -> str:
    """The dtype litdata's numpy serializers number ``index`` (complex, object and str have no fastload dtype)."""
    if 0 <= index < len(_NUMPY_DTYPES):
        return _NUMPY_DTYPES[index]
    if index in _NUMPY_EXTRA:
        return _NUMPY_EXTRA[index]
    raise ValueError(f"numpy dtype number {index} (complex, object, bytes or str) has no fastload dtype")


def torch_dtype(index: int) -> str:
    if index not in _TORCH_DTYPES:
        raise ValueError(f"torch dtype number {index} (complex or bfloat16) has no fastload dtype")
    return _TORCH_DTYPES[index]


def _base(fmt: str) -> str:
    return fmt.split(":", 1)[0]


# -- chunk layouts ------------------------------------------------------------------------------


def _decode_item(item: memoryview, formats: list[str]) -> list[Any]:
    k = len(formats)
    if len(item) < 4 * k:
        raise ValueError("item shorter than its size header")
    sizes = struct.unpack_from(f"<{k}I", item, 0)
    pos = 4 * k
    if pos + sum(sizes) != len(item):
        raise ValueError(f"leaf sizes add up to {sum(sizes)} bytes, the item holds {len(item) - pos}")
    values = []
    for fmt, size in zip(formats, sizes):
        try:
            values.append(_decode_leaf(fmt, item[pos : pos + size]))
        except (ValueError, UnicodeDecodeError, struct.error) as exc:
            raise ValueError(f"leaf {len(values)} ({fmt}): {exc}") from None
        pos += size
    return values


def _decode_leaf(fmt: str, b: memoryview) -> Any:
    base = _base(fmt)
    if base == "int":
        return struct.unpack("<q", b)[0]
    if base == "float":
        return struct.unpack("<d", b)[0]
    if base == "bool":
        if len(b) != 1:
            raise ValueError(f"a bool is 1 byte, not {len(b)}")
        return b[0] != 0
    if base in ("str", "text"):
        return str(b, "utf-8")
    if base in ("bytes", "file", "jpeg", "image"):
        return bytes(b)
    if base == "numpy":
        return _numpy_leaf(b)
    if base == "tensor":
        return _tensor_leaf(b)
    if base in ("no_header_numpy", "no_header_tensor"):
        dt = np.dtype(_no_header_dtype(fmt)).newbyteorder("<")
        if len(b) % dt.itemsize:
            raise ValueError(f"{len(b)} bytes are not a whole number of {dt.name}")
        return np.frombuffer(b, dt).astype(dt.name)
    if base == "pil":
        return pil_raw_to_array(b)
    if base == "json":
        return decode_nested(bytes(b))
    raise ValueError(f"serializer {fmt!r} is not supported")


def _no_header_dtype(fmt: str) -> str:
    base, _, index = fmt.partition(":")
    return numpy_dtype(int(index)) if base == "no_header_numpy" else torch_dtype(int(index))


def _numpy_leaf(b: memoryview) -> np.ndarray:
    """``numpy``: uint32 dtype number, uint32 ndim, uint32 dims (all little-endian), the values."""
    code, ndim = struct.unpack_from("<II", b, 0)
    shape = struct.unpack_from(f"<{ndim}I", b, 8)
    return _array(b, numpy_dtype(code), shape, 8 + 4 * ndim)


def _tensor_leaf(b: memoryview) -> np.ndarray:
    """``tensor``: big-endian uint32 dtype number and rank, big-endian uint32 dims, the values."""
    code, rank = struct.unpack_from(">II", b, 0)
    shape = struct.unpack_from(f">{rank}I", b, 8)
    return _array(b, torch_dtype(code), shape, 8 + 4 * rank)


def _array(b: memoryview, dtype: str, shape: tuple[int, ...], pos: int) -> np.ndarray:
    dt = np.dtype(dtype).newbyteorder("<")
    count = int(np.prod(shape, dtype=np.int64))
    if len(b) - pos != count * dt.itemsize:
        raise ValueError(f"{len(b) - pos} bytes do not hold a {dtype} array of shape {list(shape)}")
    return np.frombuffer(b, dt, count=count, offset=pos).reshape(shape).astype(dtype)


def decode_nested(raw: bytes) -> Any:
    """A ``json`` leaf: plain JSON text, or litdata's compact tagged encoding (first byte < 0x20)."""
    if not raw or raw[0] > 0x20:
        return json.loads(raw)
    value, end = _NestedReader(raw).value(0)
    if end != len(raw):
        raise ValueError(f"{len(raw) - end} bytes left after the JSON value")
    return value


class _NestedReader:
    """The tagged encoding: a tag byte, then the value; containers carry a uint32 count."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.raw, pos)[0]

    def text(self, pos: int) -> tuple[str, int]:
        n = self.u32(pos)
        end = pos + 4 + n
        if end > len(self.raw):
            raise ValueError("string runs past the end of the value")
        return self.raw[pos + 4 : end].decode("utf-8"), end

    def value(self, pos: int) -> tuple[Any, int]:
        tag, raw = self.raw[pos], self.raw
        if tag == 0:  # JSON text
            n = self.u32(pos + 1)
            return json.loads(raw[pos + 5 : pos + 5 + n]), pos + 5 + n
        if tag == 1:  # list of str
            n, pos = self.u32(pos + 1), pos + 5
            out = []
            for _ in range(n):
                s, pos = self.text(pos)
                out.append(s)
            return out, pos
        if tag in (2, 3):  # list of int64 / float64
            n = self.u32(pos + 1)
            end = pos + 5 + 8 * n
            if end > len(raw):
                raise ValueError("number list runs past the end of the value")
            return np.frombuffer(raw, "<i8" if tag == 2 else "<f8", count=n, offset=pos + 5).tolist(), end
        if tag == 4:  # list of bool
            n = self.u32(pos + 1)
            return [bool(v) for v in raw[pos + 5 : pos + 5 + n]], pos + 5 + n
        if tag == 5:  # dict: count, then (key, value) pairs
            n, pos = self.u32(pos + 1), pos + 5
            out: dict[str, Any] = {}
            for _ in range(n):
                key, pos = self.text(pos)
                out[key], pos = self.value(pos)
            return out, pos
        if tag == 6:  # records: count, key count, keys, then each row's values tagged 0x10..0x14
            return self.records(pos)
        if tag == 7:
            return self.text(pos + 1)
        if tag in (8, 9):
            return struct.unpack_from("<q" if tag == 8 else "<d", raw, pos + 1)[0], pos + 9
        if tag == 10:
            return bool(raw[pos + 1]), pos + 2
        if tag == 11:
            return None, pos + 1
        raise ValueError(f"unknown tag {tag} in a litdata json value")

    def records(self, pos: int) -> tuple[list[dict[str, Any]], int]:
        n, n_keys = self.u32(pos + 1), self.u32(pos + 5)
        pos += 9
        keys = []
        for _ in range(n_keys):
            key, pos = self.text(pos)
            keys.append(key)
        rows = []
        for _ in range(n):
            row: dict[str, Any] = {}
            for key in keys:
                tag, pos = self.raw[pos], pos + 1
                if tag == 0x10:
                    row[key] = None
                elif tag == 0x11:
                    row[key], pos = self.text(pos)
                elif tag in (0x12, 0x13):
                    row[key] = struct.unpack_from("<q" if tag == 0x12 else "<d", self.raw, pos)[0]
                    pos += 8
                elif tag == 0x14:
                    row[key], pos = bool(self.raw[pos]), pos + 1
                else:
                    raise ValueError(f"unknown record tag {tag} in a litdata json value")
            rows.append(row)
        return rows, pos


# -- schema -------------------------------------------------------------------------------------
