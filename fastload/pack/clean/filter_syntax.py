"""The filter language of ``fastload pack --filter``: tokens and a recursive-descent parser.

The text is parsed here, by fastload, into a small tree of :class:`Node` objects; nothing of
it is ever handed to ``eval`` or Python's parser. Every node keeps the column (1-based) where
it starts, so :mod:`.filters` can point at the place a type does not fit, and a syntax error
here points at the offending token::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := value [ ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") value
                        | ["not"] "in" "[" literal ("," literal)* "]"
                        | "matches" STRING
                        | "is" ["not"] "null" ]
    value      := NUMBER | STRING | "true" | "false" | FIELD | `any field name`
                | FUNCTION "(" value ")" | "(" expr ")"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import FilterError

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false", "matches"})
FUNCTIONS = ("len", "lower", "upper")
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">", "=")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "string", "name", "field" (backquoted), "op", "end"
    text: str  # the token as written (for strings and backquoted names: the value)
    col: int  # 1-based column of its first character
    value: object = None  # numbers: int or float; strings: str


@dataclass(frozen=True)
class Node:
    """One node of a parsed filter; ``col`` is where it starts in the text (1-based)."""

    kind: str  # "literal", "field", "call", "compare", "in", "matches", "isnull", "not", "and", "or"
    col: int
    value: object = None  # literal value, field name, function name, operator, or pattern
    args: tuple["Node", ...] = ()
    negated: bool = False  # "not in", "is not null"


def syntax_error(text: str, col: int, message: str) -> FilterError:
    """A FilterError showing the expression with a caret under column ``col``."""
    where = f"column {col}" if col <= len(text) else f"column {col} (the end of the expression)"
    caret = " " * (col - 1) + "^"
    return FilterError(f"invalid filter at {where}: {message}\n  {text}\n  {caret}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c in "\"'":
            value, i = _string(text, i)
            tokens.append(Token("string", value, col, value))
            continue
        if c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise syntax_error(text, col, "a backquoted field name is not closed")
            if end == i + 1:
                raise syntax_error(text, col, "an empty field name")
            tokens.append(Token("field", text[i + 1 : end], col))
            i = end + 1
            continue
        two = text[i : i + 2]
        if two in ("==", "!=", "<=", ">="):
            tokens.append(Token("op", two, col))
            i += 2
            continue
        if c in "<>=(),[]":
            tokens.append(Token("op", c, col))
            i += 1
            continue
        signed = c == "-" and i + 1 < len(text) and (text[i + 1].isdigit() or text[i + 1] == ".")
        m = _NUMBER.match(text, i + 1 if signed else i)
        if m and (signed or c.isdigit() or c == "."):
            word = text[i : m.end()]
            if m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] == "_"):
                raise syntax_error(text, m.end() + 1, f"unexpected character {text[m.end()]!r} after the number {word}")
            is_int = re.fullmatch(r"-?\d+", word) is not None
            tokens.append(Token("number", word, col, int(word) if is_int else float(word)))
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m:
            tokens.append(Token("name", m.group(), col))
            i = m.end()
            continue
        hint = " (write == to compare, 'and'/'or'/'not' for logic)" if c in "!&|~" else ""
        raise syntax_error(text, col, f"unexpected character {c!r}{hint}")
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                known = "\\\\ \\\" \\' \\n \\t \\r"
                raise syntax_error(text, i + 1, f"unknown escape {text[i : i + 2]!r} in a string (known: {known}; "
                                                "write a regex's backslash as \\\\)")
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    raise syntax_error(text, start + 1, "a string is not closed")


def parse(text: str) -> Node:
    """The tree of filter ``text``; raises :class:`FilterError` pointing at the first error."""
    if not isinstance(text, str):
        raise TypeError(f"a filter is text, a pyarrow.compute.Expression or a callable, not {type(text).__name__}")
    if not text.strip():
        raise FilterError("invalid filter: the expression is empty")
    parser = _Parser(text, tokenize(text))
    node = parser.expr()
    tok = parser.peek()
    if tok.kind != "end":
        if tok.kind == "op" and tok.text in COMPARISONS:
            raise syntax_error(text, tok.col, "comparisons do not chain; join them with 'and'")
        raise syntax_error(text, tok.col, f"unexpected {_describe(tok)}; expected 'and', 'or' or the end")
    return node


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "end of the expression"
    if tok.kind == "string":
        return f"string {tok.text!r}"
    return f"{tok.text!r}"


class _Parser:
    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.pos = 0

    def fail(self, col: int, message: str) -> FilterError:
        return syntax_error(self.text, col, message)

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def is_word(self, word: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "name" and tok.text == word

    def is_op(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == op

    def expect_op(self, op: str, what: str) -> Token:
        tok = self.peek()
        if not self.is_op(op):
            raise self.fail(tok.col, f"expected {op!r} {what}, found {_describe(tok)}")
        return self.take()

    def expr(self) -> Node:
        return self.binary("or", self.and_)

    def and_(self) -> Node:
        return self.binary("and", self.not_)

    def binary(self, word: str, operand) -> Node:
        node = operand()
        while self.is_word(word):
            self.take()
            right = operand()  # a run of the same operator is one n-ary node
            node = Node(word, node.col, args=(*(node.args if node.kind == word else (node,)), right))
        return node

    def not_(self) -> Node:
        if self.is_word("not"):
            tok = self.take()
            return Node("not", tok.col, args=(self.not_(),))
        return self.comparison()

    def comparison(self) -> Node:
        left = self.value()
        tok = self.peek()
        if tok.kind == "op" and tok.text in COMPARISONS:
            self.take()
            op = "==" if tok.text == "=" else tok.text
            return Node("compare", left.col, op, (left, self.value()))
        if self.is_word("in") or (self.is_word("not") and self.is_word("in", 1)):
            negated = self.is_word("not")
            self.pos += 2 if negated else 1
            return Node("in", left.col, args=(left, *self.literal_list()), negated=negated)
        if self.is_word("matches"):
            self.take()
            pat = self.peek()
            if pat.kind != "string":
                raise self.fail(pat.col, f"'matches' takes a regular expression in quotes, found {_describe(pat)}")
            self.take()
            return Node("matches", left.col, Node("literal", pat.col, pat.value), (left,))
        if self.is_word("is"):
            self.take()
            negated = self.is_word("not")
            if negated:
                self.take()
            if not self.is_word("null"):
                raise self.fail(self.peek().col, f"expected 'null' after 'is{' not' if negated else ''}', "
                                                               f"found {_describe(self.peek())}")
            self.take()
            return Node("isnull", left.col, args=(left,), negated=negated)
        return left

    def literal_list(self) -> tuple[Node, ...]:
        self.expect_op("[", "to open the list after 'in'")
        items = [self.literal()]
        while self.is_op(","):
            self.take()
            items.append(self.literal())
        self.expect_op("]", "to close the list")
        return tuple(items)

    def literal(self) -> Node:
        tok = self.peek()
        if tok.kind in ("number", "string"):
            self.take()
            return Node("literal", tok.col, tok.value)
        if self.is_word("true") or self.is_word("false"):
            self.take()
            return Node("literal", tok.col, tok.text == "true")
        raise self.fail(tok.col, f"expected a number, a string, true or false in the list, found {_describe(tok)}")

    def value(self) -> Node:
        tok = self.peek()
        if tok.kind in ("number", "string"):
            self.take()
            return Node("literal", tok.col, tok.value)
        if tok.kind == "field":
            self.take()
            return Node("field", tok.col, tok.text)
        if self.is_op("("):
            self.take()
            inner = self.expr()
            self.expect_op(")", "to close the parenthesis")
            return inner
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                self.take()
                return Node("literal", tok.col, tok.text == "true")
            if tok.text == "null":
                raise self.fail(tok.col, "null compares to nothing; write 'FIELD is null' or 'FIELD is not null'")
            if tok.text in KEYWORDS:
                raise self.fail(tok.col, f"expected a value, found the keyword {tok.text!r} "
                                                       "(backquote a field of that name: `name`)")
            self.take()
            if self.is_op("("):
                if tok.text not in FUNCTIONS:
                    raise self.fail(tok.col, f"unknown function {tok.text!r}; known: {', '.join(FUNCTIONS)}")
                self.take()
                arg = self.value()
                self.expect_op(")", f"to close {tok.text}(")
                return Node("call", tok.col, tok.text, (arg,))
            return Node("field", tok.col, tok.text)
        raise self.fail(tok.col, f"expected a value (a field, number, string or function), "
                                               f"found {_describe(tok)}")
