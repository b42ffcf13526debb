"""Parse stage: expression text -> AST, or a located E101/E106 diagnostic.

The grammar lives in `grammar.lark` and is built once. Lark trees never leave this
module: the transformer turns them into the frozen nodes of `dsl.ast`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from lark import Lark, Transformer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from dsl import ast
from dsl.diagnostics import Diagnostic, SourceText

#: Limits checked before and after parsing, so evaluation stays bounded.
MAX_EXPRESSION_LENGTH = 4096
MAX_NESTING = 32
MAX_NODES = 1000
MAX_LIST_LENGTH = 1000

_TOKEN_NAMES = {
    "_OR": "OR",
    "_AND": "AND",
    "NOT": "NOT",
    "_IN": "in",
    "COMP_OP": "a comparison operator",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "PERCENT": "'%'",
    "NAME": "a name",
    "INT": "a number",
    "DECIMAL": "a number",
    "DQ_STRING": "a string",
    "SQ_STRING": "a string",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "LPAR": "'('",
    "__ANON_0": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "$END": "the end of the expression",
}


class ParseFailure(Exception):
    """Raised by `parse` with the diagnostic that explains why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


@cache
def _parser() -> Lark:
    grammar = files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    # The transformer runs inside the LALR parser: no parse tree is ever built, which
    # makes parsing several times faster on large policy sets.
    plugins: dict[str, Any] = {}
    try:  # the Cython LALR parser of the Lark project, same grammar, several times faster
        import lark_cython

        plugins = lark_cython.plugins
    except ImportError:  # pragma: no cover - pure-Python Lark is the fallback
        pass
    # The basic lexer keeps keywords keywords: `is_pep AND AND x` is an error at the
    # second AND, not a fact named AND.
    return Lark(
        grammar, parser="lalr", lexer="basic", transformer=_ToAst(), maybe_placeholders=False, _plugins=plugins
    )


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/", "0": "\0"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def _unescape(body: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        # An unknown escape stays as written, so regular expressions such as "\d+"
        # mean what their authors expect.
        return _ESCAPES.get(code, match.group(0))

    return _ESCAPE_RE.sub(replace, body)


# Tokens come from Lark or from lark_cython (a different class): only their
# `value`, `type`, `start_pos` and `end_pos` attributes are used. AST nodes have `span`.


def _tok_span(token: Any) -> ast.Span:
    return ast.Span(token.start_pos or 0, token.end_pos)


def _is_node(child: Any) -> bool:
    return hasattr(child, "span")


def _span(children: list[Any]) -> ast.Span:
    """The span from the first child to the last."""
    first = next(c for c in children if c is not None)
    last = next(c for c in reversed(children) if c is not None)
    start = first.span.start if _is_node(first) else first.start_pos
    end = last.span.end if _is_node(last) else last.end_pos
    return ast.Span(start, end)


class _ToAst(Transformer[Any, ast.Expr]):
    """Builds `dsl.ast` nodes as the parser reduces; spans come from the tokens."""

    def true(self, children: list[Any]) -> ast.Literal:
        return ast.Literal(True, _tok_span(children[0]))

    def false(self, children: list[Any]) -> ast.Literal:
        return ast.Literal(False, _tok_span(children[0]))

    def null(self, children: list[Any]) -> ast.Literal:
        return ast.Literal(None, _tok_span(children[0]))

    def number(self, children: list[Any]) -> ast.Literal:
        text = children[0].value
        value: int | float = float(text) if ("." in text or "e" in text or "E" in text) else int(text)
        return ast.Literal(value, _tok_span(children[0]))

    def string(self, children: list[Any]) -> ast.Literal:
        return ast.Literal(_unescape(children[0].value[1:-1]), _tok_span(children[0]))

    def name(self, children: list[Any]) -> ast.Name:
        return ast.Name(children[0].value, _tok_span(children[0]))

    def list_(self, children: list[Any]) -> ast.ListExpr:
        items = tuple(c for c in children if c is not None and _is_node(c))
        return ast.ListExpr(items, _span(children))  # `[` and `]` are kept to locate the list

    def attr(self, children: list[Any]) -> ast.Attr:
        return ast.Attr(children[0], children[1].value, _span(children))

    def index(self, children: list[Any]) -> ast.Index:
        return ast.Index(children[0], children[2], _span(children))

    def paren(self, children: list[Any]) -> ast.Expr:
        return children[0]  # type: ignore[no-any-return]

    def not_(self, children: list[Any]) -> ast.Not:
        operand = children[-1]
        start = operand.span.start if _is_node(children[0]) else children[0].start_pos
        return ast.Not(operand, ast.Span(start, operand.span.end))

    def and_(self, children: list[Any]) -> ast.BoolOp:
        return ast.BoolOp("and", tuple(children), _span(children))

    def or_(self, children: list[Any]) -> ast.BoolOp:
        return ast.BoolOp("or", tuple(children), _span(children))

    def compare(self, children: list[Any]) -> ast.Compare:
        return ast.Compare(children[1].value, children[0], children[2], _span(children))

    def in_(self, children: list[Any]) -> ast.Compare:
        return ast.Compare("in", children[0], children[-1], _span(children))

    def not_in(self, children: list[Any]) -> ast.Compare:
        return ast.Compare("not in", children[0], children[-1], _span(children))

    def arith(self, children: list[Any]) -> ast.Arith:
        return ast.Arith(children[1].value, children[0], children[2], _span(children))

    def neg(self, children: list[Any]) -> ast.Expr:
        operand = children[1]
        span = _span(children)
        if isinstance(operand, ast.Literal) and isinstance(operand.value, (int, float)) and not isinstance(
            operand.value, bool
        ):
            return ast.Literal(-operand.value, span)
        return ast.Neg(operand, span)

    def call(self, children: list[Any]) -> ast.Expr:
        name_token = children[0]
        args = tuple(c for c in children[1:] if c is not None and _is_node(c))
        span = _span(children)  # the closing `)` is kept as a token
        lowered = name_token.value.lower()
        if lowered in ("any", "all") and len(args) == 2:
            binding = args[0]
            if isinstance(binding, ast.Compare) and binding.op == "in" and isinstance(binding.left, ast.Name):
                return ast.Quantifier(lowered, binding.left.name, binding.right, args[1], span)
        return ast.Call(name_token.value, args, span, _tok_span(name_token))


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected if not e.startswith("__")})
    if not names:
        return ""
    if len(names) > 6:
        return "an operand" if "NAME" in expected else "an operator"
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]


def _syntax_diagnostic(source: SourceText, err: UnexpectedInput) -> Diagnostic:
    text = source.text
    pos = err.pos_in_stream if err.pos_in_stream is not None else len(text)
    hint = None
    if isinstance(err, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        message = f"unexpected character {char!r}"
        if char == "=":
            hint = "use '==' to compare"
        elif char == "&":
            hint = "use AND"
        elif char == "|":
            hint = "use OR"
        elif char == "!":
            hint = "use NOT, or '!=' to compare"
        elif char in "\"'":
            hint = "a string is not closed on this line"
        end = pos + 1
    elif isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    ):
        pos = len(text.rstrip())
        expected = _describe_expected(set(err.expected))
        message = "unexpected end of expression" + (f", expected {expected}" if expected else "")
        end = pos + 1
    elif isinstance(err, UnexpectedToken):
        token = err.token
        pos = token.start_pos if token.start_pos is not None else pos
        expected = _describe_expected(set(err.expected))
        message = f"unexpected {token.value!r}" + (f", expected {expected}" if expected else "")
        if token.type == "COMP_OP" and set(err.expected) & {"_OR", "_AND", "RPAR", "$END"}:
            hint = "comparisons do not chain: write `a < b AND b < c`"
        end = pos + len(token.value)
    else:  # pragma: no cover - lark raises only the subclasses above
        message = "syntax error"
        end = pos + 1
    return source.diagnostic("E101", message, pos, end, hint=hint)


def _nesting_depth(text: str) -> tuple[int, int]:
    """Deepest bracket nesting and the offset where it is reached (strings skipped)."""
    depth = best = where = 0
    quote = ""
    escaped = False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
            if depth > best:
                best, where = depth, i
        elif ch in ")]":
            depth -= 1
    return best, where


def _tree_depth(node: ast.Expr) -> int:
    deepest = 0
    stack: list[tuple[ast.Expr, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.children(current))
    return deepest


# -- shape cache ----------------------------------------------------------------------
# Large policy sets are usually generated: thousands of rules of a few shapes that differ
# only in their literals (`context.country == "C17" AND context.amount > 500`). Parsing
# is the dearest load stage, so a successful parse is kept as a *template* keyed by the
# text with its literals blanked out; the next expression of the same shape is built
# from the template with its own literal values and spans, without running the parser.

_LITERAL_SCAN = re.compile(
    r'(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)"
)
_MAX_TEMPLATES = 4096


@dataclass(frozen=True, slots=True)
class _Token:
    start: int
    end: int
    value: ast.Scalar


@dataclass(frozen=True, slots=True)
class _Template:
    node: ast.Expr
    tokens: tuple[_Token, ...]
    #: For each Literal node (by id in `node`): the token index and whether it was negated.
    literals: dict[int, tuple[int, bool]]


_templates: dict[str, _Template] = {}


def _literal_value(kind: str, text: str) -> ast.Scalar:
    if kind == "string":
        return _unescape(text[1:-1])
    return float(text) if ("." in text or "e" in text or "E" in text) else int(text)


def _shape(text: str) -> tuple[str, tuple[_Token, ...]]:
    """The text with literals blanked (the cache key) and the literal tokens in order."""
    parts: list[str] = []
    tokens: list[_Token] = []
    last = 0
    for match in _LITERAL_SCAN.finditer(text):
        kind = match.lastgroup
        if kind == "name" or kind is None:
            continue
        parts.append(text[last : match.start()])
        parts.append("\x00s" if kind == "string" else "\x00n")
        tokens.append(_Token(match.start(), match.end(), _literal_value(kind, match.group())))
        last = match.end()
    parts.append(text[last:])
    return "".join(parts), tuple(tokens)


def _template(node: ast.Expr, tokens: tuple[_Token, ...], text: str) -> _Template | None:
    """Match every Literal node to its token; None when the shape cannot be reused.

    A number literal may carry minus signs the parser folded into it (`-5`, `--5`): their
    parity, read from the text, says whether the literal is the token's negation (for 0
    the values alone cannot tell).
    """
    by_end = {token.end: i for i, token in enumerate(tokens)}
    literals: dict[int, tuple[int, bool]] = {}
    for item in ast.walk(node):
        if not isinstance(item, ast.Literal) or isinstance(item.value, bool) or item.value is None:
            continue
        index = by_end.get(item.span.end)
        if index is None:
            return None
        token = tokens[index]
        signs = text[item.span.start : token.start]
        if signs.strip("- \t\r\n"):
            return None
        minus = signs.count("-") % 2 == 1
        value = token.value
        if minus:
            if not isinstance(value, (int, float)):
                return None
            value = -value
        if type(value) is not type(item.value) or repr(value) != repr(item.value):
            return None
        literals[id(item)] = (index, minus)
    if len(literals) != len(tokens):
        return None
    return _Template(node, tokens, literals)


def _instantiate(
    template: _Template, tokens: tuple[_Token, ...], literals: dict[int, tuple[int, bool]]
) -> ast.Expr:
    """The template's tree with these tokens' values, spans moved to this text; each new
    literal node's token goes into `literals`."""
    ends = [t.end for t in template.tokens]
    shifts: list[int] = []
    total = 0
    for old, new in zip(template.tokens, tokens, strict=True):
        total += (new.end - new.start) - (old.end - old.start)
        shifts.append(total)

    def move(position: int) -> int:
        # literals ending at or before `position` have shifted it
        i = bisect.bisect_right(ends, position)
        return position + (shifts[i - 1] if i else 0)

    def span(old: ast.Span) -> ast.Span:
        return ast.Span(move(old.start), move(old.end))

    def build(node: ast.Expr) -> ast.Expr:
        match node:
            case ast.Literal():
                found = template.literals.get(id(node))
                if found is None:
                    return ast.Literal(node.value, span(node.span))
                index, negated = found
                value = tokens[index].value
                literal = ast.Literal(-value if negated else value, span(node.span))  # type: ignore[operator]
                literals[id(literal)] = found
                return literal
            case ast.Name():
                return ast.Name(node.name, span(node.span))
            case ast.ListExpr():
                return ast.ListExpr(tuple(build(i) for i in node.items), span(node.span))
            case ast.Attr():
                return ast.Attr(build(node.obj), node.name, span(node.span))
            case ast.Index():
                return ast.Index(build(node.obj), build(node.index), span(node.span))
            case ast.Not():
                return ast.Not(build(node.operand), span(node.span))
            case ast.BoolOp():
                return ast.BoolOp(node.op, tuple(build(o) for o in node.operands), span(node.span))
            case ast.Compare():
                return ast.Compare(node.op, build(node.left), build(node.right), span(node.span))
            case ast.Arith():
                return ast.Arith(node.op, build(node.left), build(node.right), span(node.span))
            case ast.Neg():
                return ast.Neg(build(node.operand), span(node.span))
            case ast.Call():
                return ast.Call(node.name, tuple(build(a) for a in node.args), span(node.span), span(node.name_span))
            case ast.Quantifier():
                return ast.Quantifier(node.kind, node.var, build(node.iterable), build(node.body), span(node.span))
        raise TypeError(f"unknown node {node!r}")  # pragma: no cover

    return build(template.node)


def parse(source: SourceText | str) -> ast.Expr:
    """Parse one expression; raise `ParseFailure` with a located diagnostic."""
    return parse_literals(source).node


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed expression and its string and number literals, in text order.

    `shape` is the text with those literals blanked out: two expressions of one shape
    differ only in their literal values. `literals` maps each of these `Literal` nodes of
    `node` (by id) to its index in `values`; it is None when the tree cannot be matched
    to the literals of the text (the expression has no reusable shape).
    """

    node: ast.Expr
    shape: str
    values: tuple[ast.Scalar, ...]
    literals: dict[int, int] | None
    #: For each value: the literal is the negation of the number written (`-5`).
    negated: tuple[bool, ...] = ()


#: The literals of `_LITERAL_SCAN` as one group: a number is not part of a name when no
#: name character precedes it (a name cannot start with a digit), so `re.split` gives
#: the pieces between literals and the literals, with no per-name step. The leading
#: lookahead lets the matcher skip every position where no literal can start.
_LITERAL_SPLIT = re.compile(
    r'(?=["\'0-9])("(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
    r"|(?<![A-Za-z0-9_])(?:\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+))"
)


def literal_shape(text: str) -> tuple[str, tuple[ast.Scalar, ...]] | None:
    """The shape of `text` (the key `parse_literals` gives it) and its literal values as
    written (a leading minus apart), or None when the scanner cannot read a literal."""
    pieces = _LITERAL_SPLIT.split(text)
    values: list[ast.Scalar] = []
    try:
        for i in range(1, len(pieces), 2):
            literal = pieces[i]
            if literal[0] in "\"'":
                body = literal[1:-1]
                values.append(_unescape(body) if "\\" in body else body)
                pieces[i] = "\x00s"
            else:
                values.append(float(literal) if ("." in literal or "e" in literal or "E" in literal) else int(literal))
                pieces[i] = "\x00n"
    except ValueError:  # pragma: no cover - a number beyond int's text limit: parse normally
        return None
    return "".join(pieces), tuple(values)


def parse_literals(source: SourceText | str) -> Parsed:
    """Parse one expression and locate its literals; raise `ParseFailure` as `parse` does."""
    if isinstance(source, str):
        source = SourceText(source)
    text = source.text
    if not text.strip():
        raise ParseFailure(source.diagnostic("E101", "empty expression", 0))
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ParseFailure(
            source.diagnostic(
                "E106", f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}", 0
            )
        )
    try:
        key, tokens = _shape(text)
    except ValueError:  # pragma: no cover - an escape the scanner cannot read: parse normally
        key, tokens = "", ()
    cached = _templates.get(key) if key else None
    if cached is not None:
        literals: dict[int, tuple[int, bool]] = {}
        node = _instantiate(cached, tokens, literals)
    else:
        node = _parse_uncached(source)
        template = _template(node, tokens, text) if key else None
        if template is not None and len(_templates) < _MAX_TEMPLATES:
            _templates[key] = template
        literals = template.literals if template is not None else {}
        if template is None:
            return Parsed(node, key, tuple(t.value for t in tokens), None)
    values = [token.value for token in tokens]
    negated = [False] * len(values)
    for index, minus in literals.values():
        if minus:
            values[index] = -values[index]  # type: ignore[operator]
            negated[index] = True
    mapping = {node_id: index for node_id, (index, _) in literals.items()}
    return Parsed(node, key, tuple(values), mapping, tuple(negated))


def _parse_uncached(source: SourceText) -> ast.Expr:
    text = source.text
    depth, where = _nesting_depth(text)
    if depth > MAX_NESTING:
        raise ParseFailure(
            source.diagnostic("E106", f"brackets nest {depth} deep; the limit is {MAX_NESTING}", where, where + 1)
        )
    try:
        node: Any = _parser().parse(text)
    except UnexpectedInput as err:
        raise ParseFailure(_syntax_diagnostic(source, err)) from None
    except VisitError as err:
        original = err.orig_exc
        raise ParseFailure(source.diagnostic("E101", str(original), 0, len(text))) from None
    if not _is_node(node):  # a bare token only when the grammar inlines; keep total
        raise ParseFailure(source.diagnostic("E101", "not an expression", 0))
    nodes = ast.walk(node)
    # Lists first: a list over the limit also exceeds the node limit, and this
    # diagnostic is the more precise one.
    for item in nodes:
        if isinstance(item, ast.ListExpr) and len(item.items) > MAX_LIST_LENGTH:
            raise ParseFailure(
                source.diagnostic(
                    "E106",
                    f"list has {len(item.items)} items; the limit is {MAX_LIST_LENGTH}",
                    item.span.start,
                    item.span.end,
                )
            )
    if len(nodes) > MAX_NODES:
        raise ParseFailure(
            source.diagnostic("E106", f"expression has {len(nodes)} nodes; the limit is {MAX_NODES}", 0)
        )
    if _tree_depth(node) > MAX_NESTING * 2:
        raise ParseFailure(
            source.diagnostic("E106", f"expression nests deeper than {MAX_NESTING * 2} levels", 0)
        )
    expr: ast.Expr = node
    return expr


__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_LIST_LENGTH",
    "MAX_NESTING",
    "MAX_NODES",
    "ParseFailure",
    "Parsed",
    "literal_shape",
    "parse",
    "parse_literals",
]
