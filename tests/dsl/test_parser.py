"""Parse stage: text -> AST shapes, precedence, literals, paths, limits."""

from __future__ import annotations

import pytest

import dsl
from dsl import ast
from dsl.parser import MAX_EXPRESSION_LENGTH, MAX_LIST_LENGTH, MAX_NESTING, MAX_NODES


def shape(node: ast.Expr) -> str:
    """An s-expression of the tree without spans: `(or a (and b (not c)))`."""
    match node:
        case ast.Literal(value=value):
            return repr(value)
        case ast.Name(name=name):
            return name
        case ast.ListExpr(items=items):
            return "[" + " ".join(shape(i) for i in items) + "]"
        case ast.Attr(obj=obj, name=name):
            return f"(. {shape(obj)} {name})"
        case ast.Index(obj=obj, index=index):
            return f"([] {shape(obj)} {shape(index)})"
        case ast.Not(operand=operand):
            return f"(not {shape(operand)})"
        case ast.Neg(operand=operand):
            return f"(neg {shape(operand)})"
        case ast.BoolOp(op=op, operands=operands):
            return f"({op} " + " ".join(shape(o) for o in operands) + ")"
        case ast.Compare(op=op, left=left, right=right) | ast.Arith(op=op, left=left, right=right):
            return f"({op} {shape(left)} {shape(right)})"
        case ast.Call(name=name, args=args):
            return f"(call {name}" + "".join(" " + shape(a) for a in args) + ")"
        case ast.Quantifier(kind=kind, var=var, iterable=iterable, body=body):
            return f"({kind} {var} {shape(iterable)} {shape(body)})"
    raise TypeError(node)


def parsed(text: str) -> str:
    return shape(dsl.parse(text))


def failure(text: str) -> dsl.Diagnostic:
    with pytest.raises(dsl.ParseFailure) as caught:
        dsl.parse(text)
    return caught.value.diagnostic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # NOT binds tighter than AND, AND tighter than OR
        ("a OR b AND c", "(or a (and b c))"),
        ("a AND b OR c", "(or (and a b) c)"),
        ("NOT a AND b", "(and (not a) b)"),
        ("NOT a OR NOT b AND c", "(or (not a) (and (not b) c))"),
        ("(a OR b) AND c", "(and (or a b) c)"),
        ("a AND b AND c", "(and a b c)"),
        ("a or b or c", "(or a b c)"),
        ("NOT NOT a", "(not (not a))"),
        # comparison binds tighter than NOT
        ("NOT a == b", "(not (== a b))"),
        ("a == 1 AND b != 2", "(and (== a 1) (!= b 2))"),
        # arithmetic precedence and associativity
        ("a + b * c", "(+ a (* b c))"),
        ("a * b + c", "(+ (* a b) c)"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b / c", "(/ (/ a b) c)"),
        ("a % b * c", "(* (% a b) c)"),
        ("(a + b) * c", "(* (+ a b) c)"),
        ("a + b < c * d", "(< (+ a b) (* c d))"),
        # unary minus: tighter than * , looser than postfix; literals fold
        ("-a * b", "(* (neg a) b)"),
        ("-a.b", "(neg (. a b))"),
        ("-2 * 3", "(* -2 3)"),
        ("2 - -3", "(- 2 -3)"),
        ("--a", "(neg (neg a))"),
        ("--2", "2"),
        ("-(2)", "-2"),
        ("-2.5", "-2.5"),
        # membership
        ("a in b", "(in a b)"),
        ("a not in b", "(not in a b)"),
        ("a NOT IN b", "(not in a b)"),
        ("NOT a in b", "(not (in a b))"),
        ("a + 1 in b", "(in (+ a 1) b)"),
    ],
)
def test_precedence(text: str, expected: str) -> None:
    assert parsed(text) == expected


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_every_comparison_operator(op: str) -> None:
    assert parsed(f"a {op} 1") == f"({op} a 1)"


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "%"])
def test_every_arithmetic_operator(op: str) -> None:
    assert parsed(f"a {op} 1") == f"({op} a 1)"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("TRUE", True), ("True", True), ("tRuE", True),
        ("false", False), ("FALSE", False), ("False", False),
        ("null", None), ("NULL", None), ("Null", None),
        ("0", 0), ("42", 42), ("007", 7), ("2.5", 2.5), ("1e3", 1000.0), ("1.5E-2", 0.015), ("2e+2", 200.0),
        ('"abc"', "abc"), ("'abc'", "abc"), ('""', ""), ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'),
        (r'"a\"b"', 'a"b'), (r"'a\'b'", "a'b"), (r'"a\\b"', "a\\b"), (r'"\n\t\r"', "\n\t\r"),
        (r'"\u00e9"', "é"), (r'"a\/b"', "a/b"), (r'"\0"', "\0"), ('"odd key"', "odd key"),
    ],
)
def test_literals(text: str, value: object) -> None:
    node = dsl.parse(text)
    assert isinstance(node, ast.Literal)
    assert type(node.value) is type(value)
    assert node.value == value


def test_integer_and_decimal_literals_keep_their_types() -> None:
    one, one_point_oh = dsl.parse("1"), dsl.parse("1.0")
    assert isinstance(one, ast.Literal) and type(one.value) is int
    assert isinstance(one_point_oh, ast.Literal) and type(one_point_oh.value) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "[]"),
        ("[1]", "[1]"),
        ("[1, 'a', true, null]", "[1 'a' True None]"),
        ("[1, 2,]", "[1 2]"),
        ("[[1], [a]]", "[[1] [a]]"),
        ("[a + 1, -b]", "[(+ a 1) (neg b)]"),
    ],
)
def test_lists(text: str, expected: str) -> None:
    assert parsed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "path"),
    [
        ("is_pep", "is_pep", "is_pep"),
        ("context.amount", "(. context amount)", "context.amount"),
        ("data.high_risk_countries", "(. data high_risk_countries)", "data.high_risk_countries"),
        ("context.items[0]", "([] (. context items) 0)", "context.items[0]"),
        ('context["odd key"]', "([] context 'odd key')", "context['odd key']"),
        ("context['a.b'].c", "(. ([] context 'a.b') c)", "context['a.b'].c"),
        ("context.items[0].amount", "(. ([] (. context items) 0) amount)", "context.items[0].amount"),
        ("context.m[0][1]", "([] ([] (. context m) 0) 1)", "context.m[0][1]"),
        ("context.items[context.i]", "([] (. context items) (. context i))", None),
        ("context.items[-1]", "([] (. context items) -1)", "context.items[-1]"),
        ("context . a", "(. context a)", "context.a"),
    ],
)
def test_paths(text: str, expected: str, path: str | None) -> None:
    node = dsl.parse(text)
    assert shape(node) == expected
    assert ast.path_text(node) == path


def test_root_name_of_a_path() -> None:
    root = ast.root_name(dsl.parse("context.items[0].amount"))
    assert root is not None and root.name == "context" and root.span == dsl.Span(0, 7)
    assert ast.root_name(dsl.parse("len(x).a")) is None


@pytest.mark.parametrize(
    "text",
    ["order", "notable", "android", "orbit", "true_value", "nullable", "index", "inside", "and_more", "NOTE"],
)
def test_names_that_start_with_a_keyword_are_names(text: str) -> None:
    assert parsed(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a and b", "(and a b)"),
        ("a AnD b", "(and a b)"),
        ("a Or b", "(or a b)"),
        ("not a", "(not a)"),
        ("Not a", "(not a)"),
        ("a In b", "(in a b)"),
        ("a nOt iN b", "(not in a b)"),
    ],
)
def test_keywords_are_case_insensitive(text: str, expected: str) -> None:
    assert parsed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len(x)", "(call len x)"),
        ("now()", "(call now)"),
        ("startswith(a, 'b')", "(call startswith a 'b')"),
        ("any(x in context.items, x.amount > 100)", "(any x (. context items) (> (. x amount) 100))"),
        ("all(item in l, item)", "(all item l item)"),
        ("ANY(x in l, x)", "(any x l x)"),
        ("All(x in l, x)", "(all x l x)"),
        ("any(x in l, any(y in x, y == 1))", "(any x l (any y x (== y 1)))"),
        # not the quantifier form: left as calls for the checker to reject
        ("any(l, x)", "(call any l x)"),
        ("any(x.a in l, x)", "(call any (in (. x a) l) x)"),
        ("any(x in l)", "(call any (in x l))"),
    ],
)
def test_calls_and_quantifiers(text: str, expected: str) -> None:
    assert parsed(text) == expected


def test_spans_are_offsets_into_the_text() -> None:
    node = dsl.parse("len(ab) >= 10")
    assert isinstance(node, ast.Compare)
    assert node.span == dsl.Span(0, 13)
    call = node.left
    assert isinstance(call, ast.Call)
    assert call.span == dsl.Span(0, 7)
    assert call.name_span == dsl.Span(0, 3)
    assert call.args[0].span == dsl.Span(4, 6)
    assert node.right.span == dsl.Span(11, 13)


def test_walk_visits_parents_before_children_in_source_order() -> None:
    names = [n.name for n in ast.walk(dsl.parse("a AND (b OR c)")) if isinstance(n, ast.Name)]
    assert names == ["a", "b", "c"]
    assert len(ast.walk(dsl.parse("a AND (b OR c)"))) == 5


@pytest.mark.parametrize("text", ["a < b < c", "a == b == c", "a < b >= c", "1 != 2 != 3"])
def test_comparisons_do_not_chain(text: str) -> None:
    diagnostic = failure(text)
    assert diagnostic.code == "E101"
    assert diagnostic.hint == "comparisons do not chain: write `a < b AND b < c`"


def test_comparisons_chain_when_parenthesised() -> None:
    assert parsed("(a < b) == c") == "(== (< a b) c)"


@pytest.mark.parametrize(
    "text", ["", "   ", "a AND", "(a", "a )", "1 2", "x.", "len(", "[1,,2]", "a = b", "a && b", "'abc", "context.1"]
)
def test_syntax_errors_are_e101(text: str) -> None:
    assert failure(text).code == "E101"


# ---------------------------------------------------------------- limits (E106)


def test_expression_length_limit() -> None:
    at_limit = "a" * MAX_EXPRESSION_LENGTH
    assert parsed(at_limit) == at_limit
    diagnostic = failure("a" * (MAX_EXPRESSION_LENGTH + 1))
    assert (diagnostic.code, diagnostic.line, diagnostic.col) == ("E106", 1, 1)
    assert diagnostic.message == f"expression is {MAX_EXPRESSION_LENGTH + 1} characters long; the limit is 4096"


def test_bracket_nesting_limit_points_at_the_first_bracket_too_deep() -> None:
    ok = "(" * MAX_NESTING + "a" + ")" * MAX_NESTING
    assert parsed(ok) == "a"
    diagnostic = failure("x + " + "(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1))
    assert diagnostic.code == "E106"
    assert diagnostic.message == "brackets nest 33 deep; the limit is 32"
    assert (diagnostic.line, diagnostic.col, diagnostic.end_col) == (1, 5 + MAX_NESTING, 6 + MAX_NESTING)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '"' + "(" * 50 + '" == a'
    assert parsed(text) == f"(== {'(' * 50!r} a)"


def test_list_length_limit_points_at_the_list() -> None:
    ok = "[" + ", ".join(["1"] * (MAX_LIST_LENGTH - 1)) + "]"  # with the list node: MAX_NODES nodes
    assert len(ast.walk(dsl.parse(ok))) == MAX_NODES
    items = ",".join(["1"] * (MAX_LIST_LENGTH + 1))
    diagnostic = failure(f"a in [{items}]")
    assert diagnostic.code == "E106"
    assert diagnostic.message == "list has 1001 items; the limit is 1000"
    assert (diagnostic.line, diagnostic.col, diagnostic.end_col) == (1, 6, 6 + len(items) + 2)


def test_node_count_limit() -> None:
    def lists(items: int) -> str:  # two lists of `items` literals and the comparison
        listed = "[" + ",".join(["1"] * items) + "]"
        return f"{listed} == {listed}"

    assert len(ast.walk(dsl.parse(lists(498)))) == MAX_NODES - 1
    diagnostic = failure(lists(499))
    assert (diagnostic.code, diagnostic.message) == ("E106", "expression has 1001 nodes; the limit is 1000")
    assert (diagnostic.line, diagnostic.col) == (1, 1)


def test_tree_depth_limit_without_brackets() -> None:
    assert parsed("NOT " * 63 + "a").count("not") == 63
    diagnostic = failure("NOT " * 64 + "a")
    assert (diagnostic.code, diagnostic.message) == ("E106", "expression nests deeper than 64 levels")


@pytest.mark.parametrize(
    "text",
    [
        "NOT " * 1000 + "a",
        "-" * 3000 + "a",
        "a" + ".b" * 2000,
        "+".join(["a"] * 2000),
        " AND ".join(["a"] * 800),
        "a" + "[0]" * 1300,
    ],
    ids=["not", "minus", "attr", "plus", "and", "index"],
)
def test_deep_nesting_without_brackets_is_e106_not_recursion_error(text: str) -> None:
    # regression: the recursive Lark transformer raised RecursionError on these
    assert failure(text).code == "E106"


@pytest.mark.parametrize("text", [r'"\q"', r"'^\d+$'", r'"\u12"', r'"\x41" == a', r"'\'"])
def test_unusual_escapes_never_escape_as_python_errors(text: str) -> None:
    # regression: with the transformer inside the LALR parser, `_unescape`'s ValueError
    # for an unknown escape escaped `parse` unconverted
    try:
        dsl.parse(text)
    except dsl.ParseFailure as caught:
        assert caught.diagnostic.code == "E101"
