"""What cleaning a pack does (``dedup``, ``normalize``, ``filter``, ``drop_invalid``), checked
once against the schema before any row is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc

from ..._sizes import parse_size
from ...errors import SchemaError
from ...format.schema import Schema
from .filters import BoundFilter, bind_filter, filter_label
from .hashing import NORMALIZATIONS
from .validate import BEFORE_CONVERSION, RULES, applicable

DEFAULT_DEDUP_MEMORY = 1 << 30  # 1 GiB: 16-33 M distinct records before the table spills to disk
HASH_NAME = "xxh3_128"


@dataclass(frozen=True)
class CleanOptions:
    """The user's cleaning options, validated (see :meth:`of` for the accepted forms)."""

    dedup: tuple[str, ...] | None = None  # None: no dedup; (): the whole record
    normalize: tuple[str, ...] = ()
    filters: tuple[Any, ...] = ()  # filter text, pyarrow.compute.Expression or callable
    drop_invalid: tuple[str, ...] = ()
    dedup_memory: int = DEFAULT_DEDUP_MEMORY

    @classmethod
    def of(cls, *, dedup: Any = None, normalize: Any = None, filter: Any = None, drop_invalid: Any = None,
           dedup_memory: int | str | None = None) -> "CleanOptions":
        """``dedup``: True (the whole record), a field name, "a,b" or a list of names.
        ``normalize``: True (all), "nfc,case,whitespace" or a list. ``filter``: one filter or a
        list (all must hold). ``drop_invalid``: True (all rules), "utf8,empty" or a list."""
        fields = _dedup_fields(dedup)
        norm = _choices(normalize, NORMALIZATIONS, "normalize")
        if norm and fields is None:
            raise ValueError("normalize applies to the dedup hash: give dedup too")
        filters = tuple(filter) if isinstance(filter, (list, tuple)) else (() if filter is None else (filter,))
        for spec in filters:
            if not isinstance(spec, (str, pc.Expression)) and not callable(spec):
                raise TypeError(f"a filter is text, a pyarrow.compute.Expression or a callable, "
                                f"not {type(spec).__name__}")
        memory = DEFAULT_DEDUP_MEMORY if dedup_memory is None else parse_size(dedup_memory, what="dedup_memory")
        return cls(fields, norm, filters, _choices(drop_invalid, RULES, "drop_invalid"), memory)

    @property
    def active(self) -> bool:
        return self.dedup is not None or bool(self.filters) or bool(self.drop_invalid)

    def bind(self, schema: Schema) -> "CleanPlan":
        """The plan for ``schema``: fields checked, filters compiled."""
        fields = None
        if self.dedup is not None:
            fields = self.dedup or tuple(schema.names)
            missing = [f for f in fields if f not in schema]
            if missing:
                raise SchemaError(f"dedup names fields {missing} that are not in the schema ({schema.describe()})")
            if self.normalize and not any(schema[f].kind == "str" for f in fields):
                raise SchemaError(f"normalize applies to text fields, and none of the dedup fields "
                                  f"({', '.join(fields)}) is text")
        if "image" in self.drop_invalid and any(f.kind == "image" for f in schema):
            from ...image.decode import missing_decoders

            if missing_decoders():
                raise ImportError("drop_invalid='image' decodes every image and needs simplejpeg and Pillow: "
                                  "pip install 'fastload[images]'")
        rules = tuple(r for r in self.drop_invalid if any(applicable(r, f) for f in schema))
        return CleanPlan(schema, fields, self.normalize, tuple(bind_filter(s, schema) for s in self.filters),
                         tuple(r for r in rules if r in BEFORE_CONVERSION),
                         tuple(r for r in rules if r not in BEFORE_CONVERSION))

    def to_json(self) -> dict[str, Any]:
        """The settings as recorded in the manifest (filters by their text, expression or name)."""
        out: dict[str, Any] = {}
        if self.dedup is not None:
            out["dedup"] = {"fields": list(self.dedup) or "record", "normalize": list(self.normalize),
                            "hash": HASH_NAME}
        if self.filters:
            out["filters"] = [filter_label(s) for s in self.filters]
        if self.drop_invalid:
            out["drop_invalid"] = list(self.drop_invalid)
        return out


@dataclass(frozen=True)
class CleanPlan:
    """Cleaning bound to a schema (picklable: each pack worker gets it with its job)."""

    schema: Schema
    dedup: tuple[str, ...] | None
    normalize: tuple[str, ...]
    filters: tuple[BoundFilter, ...]
    rules_before: tuple[str, ...]  # drop_invalid rules on the source values ('image', 'utf8')
    rules_after: tuple[str, ...]  # on the converted values ('empty', 'nan')


def _dedup_fields(value: Any) -> tuple[str, ...] | None:
    if value is None or value is False:
        return None
    if value is True or value in ("*", ""):
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"dedup takes True (the whole record) or distinct field names, not {value!r}")
    return tuple(names)


def _choices(value: Any, choices: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``True``/"all" (every choice), a comma-separated text or a sequence of names; in ``choices``' order."""
    if value is None or value is False or value == ():
        return ()
    if value is True or value == "all":
        return choices
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    if not names or set(names) - set(choices):
        raise ValueError(f"{what} takes {', '.join(choices)} (or 'all'), not {value!r}")
    return tuple(c for c in choices if c in names)
