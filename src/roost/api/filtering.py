"""Consul's filter expressions (``?filter=``), evaluated on the JSON an endpoint answers.

The grammar is the one Consul documents (go-bexpr)::

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | match
    match  := Selector "==" Value | Selector "!=" Value
            | Selector "is" ["not"] "empty"
            | Value ["not"] "in" Selector
            | Selector ["not"] "contains" Value
            | Selector ["not"] "matches" Value

A selector is a dotted path into one element of the answer (``Service.Meta.version``,
``ServiceTags``, ``Checks.Status``); through a list it gathers the field of every element, so
``"passing" in Checks.Status`` and ``Checks.Status == "critical"`` (any of them) work. Values are
double- or back-quoted strings, or bare words and numbers. A selector that finds nothing is empty:
``==``, ``in``, ``contains`` and ``matches`` are false for it, and their negations true.

Pure: no I/O. `compile_filter` raises ValidationError, naming the position, for a bad expression.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NoReturn

from roost.errors import ValidationError

Predicate = Callable[[Any], bool]
MAX_LENGTH = 4096

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<op>==|!=|\(|\))
      | (?P<word>[^\s()"`=!]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains", "matches", "is", "empty"}
_MISSING = object()


@functools.lru_cache(maxsize=256)
def compile_filter(text: str) -> Predicate:
    if len(text) > MAX_LENGTH:
        raise ValidationError(f"filter is longer than {MAX_LENGTH} characters", field="filter")
    parser = _Parser(text)
    predicate = parser.expr()
    if parser.peek() is not None:
        parser.fail(f"unexpected {parser.peek()!r}")
    return predicate


def filter_arg(text: str | None) -> Predicate | None:
    """The predicate of a ``?filter=`` argument; None when it is absent or blank."""
    if text is None or not text.strip():
        return None
    return compile_filter(text)


def apply_filter(predicate: Predicate, data: Any) -> Any:
    """Keep the elements of a list answer (or the values of a map answer) that match."""
    if isinstance(data, list):
        return [item for item in data if predicate(item)]
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if predicate(value)}
    return data


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise ValidationError(
                    f"invalid filter at position {pos}: {text[pos : pos + 20]!r}", field="filter"
                )
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, message: str) -> NoReturn:
        where = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        raise ValidationError(f"invalid filter at position {where}: {message}", field="filter")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, *expected: str) -> str:
        token = self.peek()
        if token is None or (expected and token not in expected):
            self.fail(f"expected {' or '.join(expected) or 'more'}, found {token or 'the end'}")
        self.i += 1
        return token

    def expr(self) -> Predicate:
        left = self.term()
        while self.peek() == "or":
            self.take()
            left = _or(left, self.term())
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.peek() == "and":
            self.take()
            left = _and(left, self.factor())
        return left

    def factor(self) -> Predicate:
        token = self.peek()
        if token == "not":
            self.take()
            return _not(self.factor())
        if token == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.match()

    def operand(self) -> tuple[str, bool]:
        """The next token as text, and whether it was quoted (a value, never a selector)."""
        if self.i >= len(self.tokens):
            self.fail("expected a selector or a value, found the end")
        kind, text, _ = self.tokens[self.i]
        if kind == "op" or (kind == "word" and text in _KEYWORDS):
            self.fail(f"expected a selector or a value, found {text!r}")
        self.i += 1
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1]), True
        if kind == "raw":
            return text[1:-1], True
        return text, False

    def match(self) -> Predicate:
        first, quoted = self.operand()
        op = self.peek()
        negate = False
        if op == "not":
            self.take()
            negate, op = True, self.peek()
        if op == "in":
            self.take()
            selector = self.selector()
            return _negated(_contains(selector, first), negate)
        if quoted:
            self.fail(f"a quoted value must be followed by 'in', found {op!r}")
        selector = _selector(first)
        if op in ("==", "!=") and not negate:
            self.take()
            value, _ = self.operand()
            return _negated(_equals(selector, value), op == "!=")
        if op == "is":
            self.take()
            if self.peek() == "not":
                self.take()
                negate = True
            self.take("empty")
            return _negated(_empty(selector), negate)
        if op == "contains":
            self.take()
            value, _ = self.operand()
            return _negated(_contains(selector, value), negate)
        if op == "matches":
            self.take()
            value, _ = self.operand()
            try:
                pattern = re.compile(value)
            except re.error as exc:
                self.fail(f"bad regular expression {value!r}: {exc}")
            return _negated(_matches(selector, pattern), negate)
        self.fail(f"expected ==, !=, is, in, contains or matches, found {op or 'the end'}")

    def selector(self) -> Callable[[Any], Any]:
        text, quoted = self.operand()
        if quoted:
            self.fail(f"expected a selector, found the string {text!r}")
        return _selector(text)


# -- evaluation -------------------------------------------------------------------------------


def _selector(path: str) -> Callable[[Any], Any]:
    parts = [p for p in path.split(".") if p]
    if not parts:
        raise ValidationError(f"invalid filter: empty selector {path!r}", field="filter")

    def select(data: Any) -> Any:
        current = [data]
        gathered = False
        for part in parts:
            found = []
            for item in current:
                if isinstance(item, list):
                    gathered = True
                    items = item
                else:
                    items = [item]
                for element in items:
                    if isinstance(element, dict):
                        value = _field(element, part)
                        if value is not _MISSING:
                            found.append(value)
            current = found
        if gathered:
            flat: list[Any] = []
            for value in current:
                flat.extend(value if isinstance(value, list) else [value])
            return flat
        return current[0] if current else _MISSING

    return select


def _field(obj: dict[str, Any], name: str) -> Any:
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return _MISSING


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _equals(select: Callable[[Any], Any], value: str) -> Predicate:
    def check(data: Any) -> bool:
        found = select(data)
        if found is _MISSING:
            return False
        if isinstance(found, list):
            return any(_text(v) == value for v in found)
        return _text(found) == value

    return check


def _empty(select: Callable[[Any], Any]) -> Predicate:
    def check(data: Any) -> bool:
        found = select(data)
        return found is _MISSING or found is None or found == "" or found == [] or found == {}

    return check


def _contains(select: Callable[[Any], Any], value: str) -> Predicate:
    def check(data: Any) -> bool:
        found = select(data)
        if isinstance(found, list):
            return any(_text(v) == value for v in found)
        if isinstance(found, dict):
            return value in found
        if isinstance(found, str):
            return value in found
        return False

    return check


def _matches(select: Callable[[Any], Any], pattern: re.Pattern[str]) -> Predicate:
    def check(data: Any) -> bool:
        found = select(data)
        if found is _MISSING:
            return False
        values = found if isinstance(found, list) else [found]
        return any(pattern.search(_text(v)) is not None for v in values)

    return check


def _negated(predicate: Predicate, negate: bool) -> Predicate:
    return _not(predicate) if negate else predicate


def _not(predicate: Predicate) -> Predicate:
    return lambda data: not predicate(data)


def _and(left: Predicate, right: Predicate) -> Predicate:
    return lambda data: left(data) and right(data)


def _or(left: Predicate, right: Predicate) -> Predicate:
    return lambda data: left(data) or right(data)
