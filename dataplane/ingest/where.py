"""The WHERE clause of the IoT rule: a small, safe subset of AWS IoT SQL evaluated on one reading.

    condition := or ;  or := and (OR and)* ;  and := not (AND not)* ;  not := NOT not | primary
    primary   := '(' condition ')' | operand [ (= | <> | != | < | <= | > | >=) operand | IS [NOT] NULL ]
    operand   := number | 'string' | TRUE | FALSE | NULL | field name (letters, digits, _, a.b for nesting)

As in IoT SQL, a comparison with a missing field (Undefined) or a value of another type is not true,
so the rule does not fire for that reading. Nothing is eval'd: the text compiles to closures.

A field the clause compares with a string literal (site = 'harbour') is a text field: the rule
accepts a short string in it for the WHERE and leaves it out of the stored record (see rule.py).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class Where:
    """A compiled WHERE clause: call it on a record; string_fields are the fields it compares with text."""

    def __init__(self, predicate: Predicate, string_fields: frozenset[str]) -> None:
        self._predicate = predicate
        self.string_fields = string_fields

    def __call__(self, record: dict[str, Any]) -> bool:
        """Return whether the rule fires for record."""
        return self._predicate(record)


_MISSING = object()
_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|'(?P<string>(?:[^']|'')*)'|(?P<op><>|!=|<=|>=|=|<|>|\(|\))"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_COMPARE = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE"}


class WhereError(ValueError):
    """The WHERE text cannot be parsed; the message says where."""


def compile_where(text: str) -> Where | None:
    """Return a Where (a predicate over a reading) for text, or None for an empty clause (every reading passes).

    Raises WhereError for text outside the grammar above.
    """
    tokens = _tokenize(text or "")
    if not tokens:
        return None
    parser = _Parser(tokens)
    predicate = parser.condition()
    if parser.position != len(tokens):
        raise WhereError(f"unexpected {tokens[parser.position][1]!r} in WHERE clause")
    return Where(predicate, frozenset(parser.string_fields))


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise WhereError(f"cannot read WHERE clause at {text[position : position + 20]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.string_fields: set[str] = set()  # top-level fields compared with a string literal

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, kind: str, value: str | None = None) -> bool:
        token = self._peek()
        if token and token[0] == kind and (value is None or token[1] == value):
            self.position += 1
            return True
        return False

    def condition(self) -> Predicate:
        parts = [self._and()]
        while self._take("keyword", "OR"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda r: any(p(r) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._take("keyword", "AND"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else lambda r: all(p(r) for p in parts)

    def _not(self) -> Predicate:
        if self._take("keyword", "NOT"):
            inner = self._not()
            return lambda r: not inner(r)
        return self._primary()

    def _primary(self) -> Predicate:
        if self._take("op", "("):
            inner = self.condition()
            if not self._take("op", ")"):
                raise WhereError("missing ')' in WHERE clause")
            return inner
        first = self._peek()
        left = self._operand()
        token = self._peek()
        if token and token[0] == "op" and token[1] in _COMPARE:
            self.position += 1
            second = self._peek()
            self._note_string_field(first, second)
            return _comparison(_COMPARE[token[1]], left, self._operand())
        if self._take("keyword", "IS"):
            negate = self._take("keyword", "NOT")
            if not self._take("keyword", "NULL"):
                raise WhereError("expected NULL after IS [NOT]")
            return (lambda r: left(r) not in (None, _MISSING)) if negate else (lambda r: left(r) is None)
        return lambda r: left(r) is True

    def _note_string_field(self, first: tuple[str, str] | None, second: tuple[str, str] | None) -> None:
        kinds = {first[0] if first else None: first, second[0] if second else None: second}
        if "string" in kinds and "word" in kinds and "." not in kinds["word"][1]:
            self.string_fields.add(kinds["word"][1])

    def _operand(self) -> Callable[[dict[str, Any]], Any]:
        token = self._peek()
        if token is None:
            raise WhereError("WHERE clause ends too early")
        self.position += 1
        kind, value = token
        if kind == "number":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            return lambda r: number
        if kind == "string":
            text = value.replace("''", "'")
            return lambda r: text
        if kind == "keyword" and value in {"TRUE", "FALSE", "NULL"}:
            constant = {"TRUE": True, "FALSE": False, "NULL": None}[value]
            return lambda r: constant
        if kind == "word":
            return _field(value.split("."))
        raise WhereError(f"unexpected {value!r} in WHERE clause")


def _field(path: list[str]) -> Callable[[dict[str, Any]], Any]:
    def get(record: dict[str, Any]) -> Any:
        value: Any = record
        for name in path:
            if not isinstance(value, dict) or name not in value:
                return _MISSING
            value = value[name]
        return value

    return get


def _comparison(compare: Callable, left: Callable, right: Callable) -> Predicate:
    def test(record: dict[str, Any]) -> bool:
        a, b = left(record), right(record)
        if a is _MISSING or b is _MISSING or a is None or b is None:
            return False
        if isinstance(a, bool) != isinstance(b, bool):
            return False
        try:
            return bool(compare(a, b))
        except TypeError:  # e.g. a string against a number: Undefined in IoT SQL
            return False

    return test
