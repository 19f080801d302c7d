"""Row filters: parse text with pyiceberg's parser, and print expressions back to that text.

Shard descriptors carry the filter as text, so that they stay JSON and any process can re-plan the
same scan from them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.errors import FilterError

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema


def parse_filter(row_filter: Any, table: str = "", columns: Sequence[str] | None = None) -> BooleanExpression:
    """A pyiceberg expression from ``None`` (everything), text, or an expression.

    Text that does not parse raises a FilterError that points at the column of the filter where it
    fails, says what was expected there and, given ``columns``, lists the table's columns."""
    from pyiceberg.expressions import AlwaysTrue, BooleanExpression
    from pyiceberg.expressions.parser import parse
    from pyparsing import ParseBaseException

    if row_filter is None or row_filter == "":
        return AlwaysTrue()
    if isinstance(row_filter, BooleanExpression):
        return row_filter
    if not isinstance(row_filter, str):
        raise FilterError(f"row_filter must be text or a pyiceberg expression, got {type(row_filter).__name__}")
    try:
        return parse(row_filter)
    except ParseBaseException as exc:
        # pyparsing's own message is its grammar ("Expected {{{W:(A-Z_a-z, ...") at a position that
        # is often the start of the text, because the grammar backtracks: find the failing token here.
        problem = diagnose_filter(row_filter)
        if problem is None:
            problem = FilterProblem(position=exc.loc, expected="valid filter syntax", found="")
        raise FilterError(_parse_error(row_filter, table, problem, columns)) from None
    except ValueError as exc:  # the parser's LIKE checks
        where = f" on table {table!r}" if table else ""
        raise FilterError(f"row_filter {row_filter!r}{where} does not parse: {exc}") from None


def _parse_error(text: str, table: str, problem: FilterProblem, columns: Sequence[str] | None) -> str:
    where = f" on table {table!r}" if table else ""
    found = f", found {problem.found}" if problem.found else ""
    lines = [
        f"row_filter {text!r}{where} does not parse at column {problem.position + 1}: "
        f"expected {problem.expected}{found}",
        f"    {text}",
        f"    {' ' * problem.position}^",
    ]
    if columns is not None:
        lines.append(f"columns of table {table!r}: {', '.join(columns) or 'none'}")
    lines.append(
        'filters look like: "id = 1", "name like \'ab%\'", "ts >= \'2024-01-01T00:00:00\'", '
        '"a in (1, 2) and not b is null"'
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class FilterProblem:
    """Where filter text stops parsing (0-based character offset), what was expected and what was found."""

    position: int
    expected: str
    found: str


@dataclass(frozen=True)
class _Token:
    kind: str  # name, keyword, string, number, op, punct, end, unclosed, bad
    text: str
    start: int


_KEYWORDS = frozenset({"and", "or", "not", "is", "in", "null", "nan", "like", "between", "true", "false"})
_LEXEME = re.compile(
    r"""(?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+))
      |(?P<name>[A-Za-z_][A-Za-z0-9_$]*)
      |(?P<op><=|>=|==|!=|<>|<|>|=)
      |(?P<punct>[(),.])""",
    re.VERBOSE,
)
_STRING = re.compile(r"'(?:[^'\n\r\\]|''|\\.)*'")
_QUOTED_NAME = re.compile(r'"(?:[^"\\]|\\.)*"')
_VALUE = "a value (a number, 'quoted text', true or false)"
_OPERATORS = (
    "an operator: =, !=, <, <=, >, >=, in (...), not in (...), between ... and ..., "
    "is [not] null, is [not] nan, [not] like '...'"
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        if text[pos] in "'\"":
            match = (_STRING if text[pos] == "'" else _QUOTED_NAME).match(text, pos)
            if match is None:
                tokens.append(_Token("unclosed", text[pos:], pos))
                break
            tokens.append(_Token("string" if text[pos] == "'" else "name", match.group(), pos))
            pos = match.end()
            continue
        match = _LEXEME.match(text, pos)
        if match is None:
            tokens.append(_Token("bad", text[pos], pos))
            break
        kind = match.lastgroup or "bad"
        if kind == "name" and match.group().lower() in _KEYWORDS:
            kind = "keyword"
        tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Stop(Exception):
    def __init__(self, token: _Token, expected: str) -> None:
        super().__init__(expected)
        self.token = token
        self.expected = expected


class _Diagnosis:
    """A recursive-descent reading of pyiceberg's filter grammar that stops at the first token that
    cannot continue the text; it builds nothing (pyiceberg's parser does that)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def at(self, kind: str, *texts: str) -> bool:
        token = self.peek()
        return token.kind == kind and (not texts or token.text.lower() in texts)

    def stop(self, expected: str) -> None:
        raise _Stop(self.peek(), expected)

    def run(self) -> None:
        self.disjunction()
        if not self.at("end"):
            self.stop("'and', 'or' or the end of the filter")

    def disjunction(self) -> None:
        self.conjunction()
        while self.at("keyword", "or"):
            self.take()
            self.conjunction()

    def conjunction(self) -> None:
        self.negation()
        while self.at("keyword", "and"):
            self.take()
            self.negation()

    def negation(self) -> None:
        if self.at("keyword", "not"):
            self.take()
            self.negation()
        elif self.at("punct", "("):
            opening = self.take()
            self.disjunction()
            if not self.at("punct", ")"):
                self.stop(f"'and', 'or' or the ')' closing the '(' at column {opening.start + 1}")
            self.take()
        else:
            self.predicate()

    def predicate(self) -> None:
        if self.at("name"):
            self.column()
            self.column_test()
        elif self.at("string") or self.at("number") or self.at("keyword", "true", "false"):
            value = self.take()
            if self.at("op"):
                self.take()
                if not self.at("name"):
                    self.stop("a column name")
                self.column()
            elif value.kind != "keyword":  # true / false alone are filters
                self.stop(f"a comparison operator (=, !=, <, <=, >, >=) after the value {value.text}")
        else:
            self.stop("a column name, 'not', '(' or true/false")

    def column(self) -> None:
        self.take()
        while self.at("punct", "."):
            self.take()
            if not self.at("name"):
                self.stop("a column name after '.'")
            self.take()

    def column_test(self) -> None:
        if self.at("op"):
            operator = self.take()
            self.value(f"{_VALUE} after {operator.text!r}")
        elif self.at("keyword", "between"):
            self.take()
            self.value(f"{_VALUE} after 'between'")
            if not self.at("keyword", "and"):
                self.stop("'and' of 'between ... and ...'")
            self.take()
            self.value(f"{_VALUE} after 'and'")
        elif self.at("keyword", "in"):
            self.take()
            self.values()
        elif self.at("keyword", "not"):
            self.take()
            if self.at("keyword", "in"):
                self.take()
                self.values()
            elif self.at("keyword", "like"):
                self.take()
                self.pattern()
            else:
                self.stop("'in' or 'like' after 'not'")
        elif self.at("keyword", "is"):
            self.take()
            if self.at("keyword", "not"):
                self.take()
            if not self.at("keyword", "null", "nan"):
                self.stop("'null' or 'nan' after 'is'")
            self.take()
        elif self.at("keyword", "like"):
            self.take()
            self.pattern()
        else:
            self.stop(_OPERATORS)

    def value(self, expected: str) -> _Token:
        if self.at("name") and self.peek().text.startswith('"'):
            self.stop(f"{expected}; text takes single quotes, double quotes name a column")
        if not (self.at("string") or self.at("number") or self.at("keyword", "true", "false")):
            self.stop(expected)
        return self.take()

    def pattern(self) -> None:
        if not self.at("string"):
            self.stop("a quoted pattern after 'like', e.g. 'abc%'")
        self.take()

    def values(self) -> None:
        if not self.at("punct", "("):
            self.stop("'(' and a list of values, e.g. in (1, 2)")
        self.take()
        first = self.value(_VALUE)
        while self.at("punct", ","):
            self.take()
            item = self.value(_VALUE)
            if _value_kind(item) != _value_kind(first):
                self.index -= 1
                self.stop(f"{_value_kind(first)} like the list's first value (a list holds one kind of value)")
        if not self.at("punct", ")"):
            self.stop("',' or ')' closing the list")
        self.take()


def _value_kind(token: _Token) -> str:
    if token.kind == "string":
        return "quoted text"
    if token.kind == "keyword":
        return "true or false"
    return "a decimal number" if "." in token.text else "an integer"


def _found(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "unclosed":
        return f"text whose quote {token.text[0]} is never closed"
    return repr(token.text)


def diagnose_filter(text: str) -> FilterProblem | None:
    """Where ``text`` stops being a filter pyiceberg parses, or None if it finds no such place."""
    try:
        _Diagnosis(text).run()
    except _Stop as stop:
        return FilterProblem(position=stop.token.start, expected=stop.expected, found=_found(stop.token))
    return None


def bind_filter(expr: BooleanExpression, schema: Schema, table: str, text: str) -> BooleanExpression:
    """Bind to ``schema``, turning an unknown column into an error that names it and the table."""
    from pyiceberg.expressions.visitors import bind

    try:
        return bind(schema, expr, case_sensitive=True)
    except ValueError as exc:
        columns = ", ".join(f.name for f in schema.fields)
        raise FilterError(f"row_filter {text!r} does not fit table {table!r}: {exc} (columns: {columns})") from None


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # The parser reads plain decimals only: no exponent notation.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise FilterError(f"cannot write literal {value!r} ({type(value).__name__}) into a row filter")


def _column_text(name: str) -> str:
    if all(part.isidentifier() for part in name.split(".")):
        return name
    return '"' + name.replace('"', '\\"') + '"'


def filter_to_text(expr: BooleanExpression) -> str:
    """Text that ``parse_filter`` turns back into an equivalent expression (unbound expressions only)."""
    from pyiceberg.expressions import (
        AlwaysFalse,
        AlwaysTrue,
        And,
        EqualTo,
        GreaterThan,
        GreaterThanOrEqual,
        In,
        IsNaN,
        IsNull,
        LessThan,
        LessThanOrEqual,
        Not,
        NotEqualTo,
        NotIn,
        NotNaN,
        NotNull,
        NotStartsWith,
        Or,
        StartsWith,
    )

    comparisons: dict[type, str] = {
        EqualTo: "=",
        NotEqualTo: "!=",
        LessThan: "<",
        LessThanOrEqual: "<=",
        GreaterThan: ">",
        GreaterThanOrEqual: ">=",
    }
    connectives: dict[type, str] = {And: "and", Or: "or"}
    unary_tests: dict[type, str] = {IsNull: "is null", NotNull: "is not null", IsNaN: "is nan", NotNaN: "is not nan"}
    if isinstance(expr, AlwaysTrue):
        return "true"
    if isinstance(expr, AlwaysFalse):
        return "false"
    if type(expr) in connectives:
        return f"({filter_to_text(expr.left)} {connectives[type(expr)]} {filter_to_text(expr.right)})"  # type: ignore[attr-defined]
    if isinstance(expr, Not):
        return f"(not {filter_to_text(expr.child)})"
    term = getattr(expr, "term", None)
    name = getattr(term, "name", None)
    if name is None:
        raise FilterError(f"cannot write expression {expr!r} as a row filter (bound or unsupported)")
    column = _column_text(name)
    for kind, op in comparisons.items():
        if type(expr) is kind:
            return f"{column} {op} {_literal_text(expr.literal.value)}"  # type: ignore[attr-defined]
    if isinstance(expr, (In, NotIn)):
        values = sorted((lit.value for lit in expr.literals), key=repr)
        inner = ", ".join(_literal_text(v) for v in values)
        return f"{column} {'in' if isinstance(expr, In) else 'not in'} ({inner})"
    if type(expr) in unary_tests:
        return f"{column} {unary_tests[type(expr)]}"
    if isinstance(expr, (StartsWith, NotStartsWith)):
        pattern = str(expr.literal.value).replace("%", "\\%") + "%"
        return f"{column} {'like' if isinstance(expr, StartsWith) else 'not like'} {_literal_text(pattern)}"
    raise FilterError(f"cannot write expression {expr!r} as a row filter")


def filter_text(row_filter: Any) -> str:
    """Canonical text of a filter given as ``None``, text or expression (for descriptors)."""
    if row_filter is None or row_filter == "":
        return "true"
    if isinstance(row_filter, str):
        return row_filter
    return filter_to_text(row_filter)
