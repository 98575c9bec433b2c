"""Record filters of ``fastload pack``: compiled to ``pyarrow.compute`` expressions, run per chunk.

A filter is filter-language text (see :mod:`.filter_syntax`), a ``pyarrow.compute.Expression``,
or a callable taking a ``pyarrow.Table`` of the chunk's rows and returning one boolean per row.
Text is type-checked against the schema before any row is read, and an error points at the
column of the expression. All three run vectorised on the chunk's converted rows (the values
as they will be stored). A record is kept when the filter is true; false or null drops it, as
SQL's ``WHERE`` does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import FilterError
from ...format.schema import Field, Schema
from .arrow_view import arrow_table, filterable
from .filter_syntax import Node, parse, syntax_error


@dataclass(frozen=True)
class BoundFilter:
    """One filter ready to run on a schema's rows (picklable: pack workers receive it)."""

    label: str  # the text, the expression as pyarrow prints it, or the function's name
    expression: pc.Expression | None = None
    function: Callable[[pa.Table], Any] | None = None
    fields: tuple[str, ...] | None = None  # the fields it reads (None: all)

    def keep(self, schema: Schema, conv: Any, n: int, where: str) -> np.ndarray:
        """One bool per row: True where the record passes."""
        table = arrow_table(schema, conv, n, self.fields)
        if self.expression is not None:
            result = _evaluate(self.expression, table, self.label, where)
        else:
            try:
                result = self.function(table)
            except FilterError:
                raise
            except Exception as exc:
                raise FilterError(f"filter {self.label} raised on the rows of {where}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return _as_mask(result, n, self.label, where)


def bind_filter(spec: Any, schema: Schema) -> BoundFilter:
    """A filter given by the user, checked against ``schema``."""
    if isinstance(spec, str):
        expression, fields = compile_filter(spec, schema)
        return BoundFilter(filter_label(spec), expression=expression, fields=tuple(fields))
    if isinstance(spec, pc.Expression):
        return BoundFilter(filter_label(spec), expression=spec)
    if callable(spec):
        return BoundFilter(filter_label(spec), function=spec)
    raise TypeError(f"a filter is text, a pyarrow.compute.Expression or a callable, not {type(spec).__name__}")


def filter_label(spec: Any) -> str:
    """How reports and the manifest name a filter: its text, its expression, or its function's name."""
    if isinstance(spec, (str, pc.Expression)):
        return str(spec).strip()
    name = getattr(spec, "__qualname__", None) or type(spec).__name__
    return f"{getattr(spec, '__module__', '') or ''}.{name}".lstrip(".")


def compile_filter(text: str, schema: Schema) -> tuple[pc.Expression, list[str]]:
    """The ``pyarrow.compute`` expression of filter ``text``, and the fields it reads."""
    compiler = _Compiler(text, schema)
    tree = parse(text)
    expr, typ = compiler.compile(tree)
    if typ != "bool":
        raise syntax_error(text, tree.col, f"a filter must be a condition (true or false per record), not {_a(typ)}; "
                                           "compare it, e.g. 'len(text) > 0'")
    if not compiler.fields:
        raise syntax_error(text, tree.col, "this filter reads no field, so it would keep every record or none")
    return expr, sorted(compiler.fields)


def _kind(f: Field) -> str:
    if f.kind == "scalar":
        return "bool" if f.dtype == "bool" else "number"
    if f.kind in ("str", "json"):
        return "text"
    if f.kind in ("bytes", "image"):
        return "bytes"
    return "array"


def _a(typ: str) -> str:
    return {"array": "an array", "bool": "a true/false value"}.get(typ, f"a {typ}")


_LITERAL_KIND = {bool: "bool", int: "number", float: "number", str: "text"}


class _Compiler:
    def __init__(self, text: str, schema: Schema):
        self.text = text
        self.schema = schema
        self.fields: set[str] = set()

    def error(self, node: Node, message: str) -> FilterError:
        return syntax_error(self.text, node.col, message)

    def compile(self, node: Node) -> tuple[Any, str]:
        return getattr(self, f"_{node.kind}")(node)

    def condition(self, node: Node, what: str) -> pc.Expression:
        expr, typ = self.compile(node)
        if typ != "bool":
            raise self.error(node, f"{what} takes a condition, not {_a(typ)}")
        return expr

    # -- values -----------------------------------------------------------------------------
    def _literal(self, node: Node) -> tuple[Any, str]:
        return pc.scalar(node.value), _LITERAL_KIND[type(node.value)]

    def _field(self, node: Node) -> tuple[Any, str]:
        name = node.value
        if name not in self.schema:
            close = difflib.get_close_matches(name, self.schema.names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.error(node, f"no field {name!r} in the schema ({', '.join(self.schema.names)}){hint}")
        f = self.schema[name]
        if not filterable(f):
            raise self.error(node, f"field {name!r} ({f.spec}) has a variable shape of more than one dimension, "
                                   "which filters cannot read")
        self.fields.add(name)
        return pc.field(name), _kind(f)

    def _call(self, node: Node) -> tuple[Any, str]:
        arg, typ = self.compile(node.args[0])
        if node.value == "len":
            fn = {"text": pc.utf8_length, "bytes": pc.binary_length, "array": pc.list_value_length}.get(typ)
            if fn is None:
                raise self.error(node.args[0], f"len() takes a text, bytes or array value, not {_a(typ)}")
            return fn(arg), "number"
        if typ != "text":
            raise self.error(node.args[0], f"{node.value}() takes a text value, not {_a(typ)}")
        return (pc.utf8_lower if node.value == "lower" else pc.utf8_upper)(arg), "text"

    # -- conditions -------------------------------------------------------------------------
    def _compare(self, node: Node) -> tuple[Any, str]:
        left, right = node.args
        if left.kind == "literal" and right.kind == "literal":
            raise self.error(node, "this compares two constants; one side must read a field")
        (a, ta), (b, tb) = self.compile(left), self.compile(right)
        if {ta, tb} == {"bytes", "text"} and (left.kind == "literal" or right.kind == "literal"):
            lit, other = (left, b) if left.kind == "literal" else (right, a)
            value = pc.scalar(lit.value.encode())  # a bytes field against a text literal: its UTF-8
            a, b = (value, other) if left.kind == "literal" else (other, value)
            ta = tb = "bytes"
        for side, typ in ((left, ta), (right, tb)):
            if typ == "array":
                raise self.error(side, "arrays cannot be compared; compare len(...) instead")
        if ta != tb:
            raise self.error(right, f"cannot compare {_a(ta)} with {_a(tb)}")
        if ta == "bool" and node.value not in ("==", "!="):
            raise self.error(node, f"true/false values take == or !=, not {node.value}")
        op = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
              ">": pc.greater, ">=": pc.greater_equal}[node.value]
        return op(a, b), "bool"

    def _in(self, node: Node) -> tuple[Any, str]:
        left, *items = node.args
        expr, typ = self.compile(left)
        if typ not in ("number", "text", "bool"):
            raise self.error(left, f"'in' takes a number, text or true/false value, not {_a(typ)}")
        for item in items:
            kind = _LITERAL_KIND[type(item.value)]
            if kind != typ:
                raise self.error(item, f"the list holds {_a(kind)} where the value is {_a(typ)}")
        values = [item.value for item in items]
        if typ == "number" and any(isinstance(v, float) for v in values):
            values = [float(v) for v in values]
        result = pc.is_in(expr, value_set=pa.array(values))
        return (pc.invert(result) if node.negated else result), "bool"

    def _matches(self, node: Node) -> tuple[Any, str]:
        expr, typ = self.compile(node.args[0])
        if typ != "text":
            raise self.error(node.args[0], f"'matches' takes a text value, not {_a(typ)}")
        pattern = node.value.value
        try:  # RE2 syntax: checked now, not at the first chunk
            pc.match_substring_regex(pa.array([""]), pattern=pattern)
        except pa.ArrowInvalid as exc:
            raise self.error(node.value, f"not a valid regular expression (RE2 syntax): {exc}") from None
        return pc.match_substring_regex(expr, pattern=pattern), "bool"

    def _isnull(self, node: Node) -> tuple[Any, str]:
        expr, _ = self.compile(node.args[0])
        return (pc.is_valid(expr) if node.negated else pc.is_null(expr)), "bool"

    def _not(self, node: Node) -> tuple[Any, str]:
        return pc.invert(self.condition(node.args[0], "'not'")), "bool"

    def _and(self, node: Node) -> tuple[Any, str]:
        exprs = [self.condition(arg, "'and'") for arg in node.args]
        out = exprs[0]
        for e in exprs[1:]:
            out = out & e
        return out, "bool"

    def _or(self, node: Node) -> tuple[Any, str]:
        exprs = [self.condition(arg, "'or'") for arg in node.args]
        out = exprs[0]
        for e in exprs[1:]:
            out = out | e
        return out, "bool"


def _evaluate(expression: pc.Expression, table: pa.Table, label: str, where: str) -> pa.Array:
    """The expression's value on every row, in row order (an Acero projection, one thread)."""
    import pyarrow.acero as ac

    plan = ac.Declaration.from_sequence([
        ac.Declaration("table_source", ac.TableSourceNodeOptions(table)),
        ac.Declaration("project", ac.ProjectNodeOptions([expression], ["keep"])),
    ])
    try:
        return plan.to_table(use_threads=False).column(0)
    except (pa.ArrowException, KeyError, TypeError, ValueError) as exc:
        raise FilterError(f"filter {label} cannot run on the rows of {where} "
                          f"(fields {', '.join(table.column_names)}): {exc}") from exc


def _as_mask(result: Any, n: int, label: str, where: str) -> np.ndarray:
    """A filter's result as a bool array of ``n`` rows; null is False."""
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        if not pa.types.is_boolean(result.type):
            raise FilterError(f"filter {label} returned {result.type} values on {where}; it must return booleans")
        mask = result.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        mask = np.asarray(result)
        if mask.dtype != np.bool_:
            raise FilterError(f"filter {label} returned {mask.dtype} values on {where}; it must return booleans")
    if mask.shape != (n,):
        raise FilterError(f"filter {label} returned {mask.shape[0] if mask.ndim else 'a scalar'} values for the "
                          f"{n} rows of {where}; it must return one boolean per row")
    return np.asarray(mask, dtype=bool)
