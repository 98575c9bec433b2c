"""The text forms of names: ``--schema`` entries (``name:type``) and ``--rename`` pairs
(``OLD=NEW``). A name is bare, or a JSON string in double quotes when it holds a separator."""

from __future__ import annotations

import json

from ..errors import SchemaError

_NAME_SPECIALS = ':=,"[]()'  # a name holding one of these is quoted in the text form
_FORMS = {":": "name:type", "=": "OLD=NEW"}


def format_name(name: str) -> str:
    """``name`` as the text form writes it: bare, or as a JSON string when it needs quotes."""
    if name != name.strip() or any(ch in _NAME_SPECIALS for ch in name):
        return json.dumps(name, ensure_ascii=False)
    return name


def parse_overrides(text: str | dict[str, str] | None) -> dict[str, str]:
    """``'a:int64,"Body Mass (g)":float32'`` -> ``{"a": "int64", "Body Mass (g)": "float32"}``.

    Entries are separated by commas outside brackets, parentheses and quotes. A name is either
    bare (no ``:=,"[]()``, surrounding spaces dropped) or a JSON string in double quotes, which
    may hold anything (``\\"`` for a quote). ``name=type`` is accepted for ``name:type``.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, str] = {}
    for part in _split_entries(text):
        if not part.strip():
            continue
        name, spec = _split_entry(part)
        if name in out:
            raise SchemaError(f"--schema names field {name!r} twice")
        out[name] = spec
    return out


def _split_entries(text: str) -> list[str]:
    parts, cur, depth, quoted, escaped = [], [], 0, False, False
    for ch in text:
        if quoted:
            quoted = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            quoted = True
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise SchemaError(f"--schema {text!r}: a quoted name is not closed")
    parts.append("".join(cur))
    return parts


def _split_entry(part: str) -> tuple[str, str]:
    name, spec = _take_name(part, (":", "="), "--schema entry")
    if not part.strip().startswith('"') and any(ch in _NAME_SPECIALS for ch in name):
        raise SchemaError(f"--schema entry {part!r}: a name holding any of {_NAME_SPECIALS} "
                          f'must be quoted, e.g. "{name}":TYPE')
    return name, spec.strip()


def parse_renames(items: str | list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["OLD=NEW", '"a=b (cm)"=tidy']`` -> ``{"OLD": "NEW", "a=b (cm)": "tidy"}``; a name that
    holds ``=`` (or starts with a quote) is written as a JSON string."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return dict(items)
    out: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items:
        old, rest = _take_name(item, ("=",), "--rename")
        new, tail = _take_name(rest, (), "--rename")
        if not old or not new or tail.strip():
            raise SchemaError(f"--rename {item!r} must be OLD=NEW")
        if old in out:
            raise SchemaError(f"--rename renames {old!r} twice")
        out[old] = new
    return out


def _take_name(text: str, seps: tuple[str, ...], what: str) -> tuple[str, str]:
    """A leading name, bare up to the first of ``seps`` or a JSON string, and the text after
    that separator (with no ``seps``, the name runs to the end)."""
    body = text.strip()
    if body.startswith('"'):
        try:
            name, end = json.JSONDecoder().raw_decode(body)
        except ValueError as exc:
            raise SchemaError(f"{what} {text!r}: bad quoted name ({exc})") from None
        rest = body[end:].lstrip()
        if seps and rest[:1] not in seps:
            raise SchemaError(f"{what} {text!r} must be {_FORMS[seps[0]]}")
        return name, rest[1:] if seps else rest
    if not seps:
        return body, ""
    cut = min((i for i in (body.find(sep) for sep in seps) if i >= 0), default=-1)
    if cut < 0:
        raise SchemaError(f"{what} {text!r} must be {_FORMS[seps[0]]}")
    return body[:cut].strip(), body[cut + 1:]
