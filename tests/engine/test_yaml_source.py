"""read_yaml: PyYAML's safe values, libyaml's node tree and positions, duplicate keys."""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import Position
from engine.yaml_source import YamlDocument, read_yaml


def same(a: Any, b: Any, pairs: set[tuple[int, int]] | None = None) -> bool:
    """Equal values of equal types (`1` is not `True`), NaN equal to NaN, mappings in the
    same order; safe for recursive values."""
    pairs = set() if pairs is None else pairs
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list | dict):
        if (id(a), id(b)) in pairs:
            return True
        pairs.add((id(a), id(b)))
        if len(a) != len(b):
            return False
        if isinstance(a, dict):
            return all(
                same(ka, kb, pairs) and same(va, vb, pairs)
                for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
            )
        return all(same(x, y, pairs) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_same_tells_values_apart() -> None:
    assert not same({"a": 1}, {"a": True})
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same([1.0], [float("nan")])
    assert not same([[1]], [[2]])
    assert same([float("nan")], [float("nan")])


def pyyaml_node(text: str) -> yaml.Node | None:
    """The node tree as read_yaml has always kept it: composed by libyaml with PyYAML's
    resolver, then constructed by PyYAML (which merges `<<` keys into the nodes)."""
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            with contextlib.suppress(yaml.YAMLError, ValueError):
                loader.construct_document(node)
        return node
    finally:
        loader.dispose()


def assert_same_tree(found: yaml.Node | None, expected: yaml.Node | None) -> None:
    stack = [(found, expected)]
    visited: set[int] = set()
    while stack:
        a, b = stack.pop()
        if b is None:
            assert a is None
            continue
        assert a is not None
        if id(b) in visited:
            continue
        visited.add(id(b))
        assert type(a) is type(b)
        assert a.tag == b.tag, a
        for mark_a, mark_b in ((a.start_mark, b.start_mark), (a.end_mark, b.end_mark)):
            assert (mark_a.index, mark_a.line, mark_a.column) == (mark_b.index, mark_b.line, mark_b.column)
        if isinstance(a, yaml.ScalarNode) and isinstance(b, yaml.ScalarNode):
            assert (a.value, a.style) == (b.value, b.style)
            continue
        assert isinstance(a, yaml.CollectionNode) and isinstance(b, yaml.CollectionNode)
        assert a.flow_style == b.flow_style
        assert len(a.value) == len(b.value)
        if isinstance(b, yaml.MappingNode):
            for (key_a, value_a), (key_b, value_b) in zip(a.value, b.value, strict=True):
                stack += [(key_a, key_b), (value_a, value_b)]
        else:
            stack += zip(a.value, b.value, strict=True)


def read(text: str) -> YamlDocument:
    return read_yaml("p.yaml", text)


def reported(doc: YamlDocument) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.line, d.col, d.message) for d in doc.diagnostics]


def repeated_keys(text: str) -> list[tuple[int, int]]:
    """Where a key repeats the text of an earlier key of its mapping (`1` repeats `"1"`),
    each mapping counted once however many aliases reach it."""
    found = []
    stack = [yaml.compose(text, Loader=yaml.CSafeLoader)]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            texts = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
            found += [
                (key.start_mark.line + 1, key.start_mark.column + 1)
                for i, (key, _) in enumerate(node.value)
                if isinstance(key, yaml.ScalarNode) and key.value in texts[:i]
            ]
            stack += [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    return sorted(found)


def assert_reads_like_pyyaml(text: str) -> YamlDocument:
    doc = read(text)
    assert [d.code for d in doc.diagnostics] == ["E003"] * len(doc.diagnostics)
    assert sorted((d.line, d.col) for d in doc.diagnostics) == repeated_keys(text)
    assert same(doc.value, yaml.load(text, Loader=yaml.SafeLoader))
    assert same(doc.value, yaml.load(text, Loader=yaml.CSafeLoader))
    assert_same_tree(doc.node, pyyaml_node(text))
    return doc


# -- values: generated documents ---------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["yes", "No", "on", "OFF", "~", "null", "0o17", "0x1F", "1_000", "190:20:30", "2001-12-14", "<<", "="])
)
# Keys whose texts collide across types (`1` and "1", `false` and "false") are repeated
# keys for read_yaml, though PyYAML keeps both.
keys = (
    st.text()
    | st.integers()
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
    | st.sampled_from(["1", "true", "false", "null", "1.5", "yes"])
)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=json_like, flow=st.sampled_from([False, True, None]), allow_unicode=st.booleans())
def test_dumped_values_read_back_as_pyyaml_reads_them(value: Any, flow: bool | None, allow_unicode: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=allow_unicode, sort_keys=False)
    assert_reads_like_pyyaml(text)


# Plain scalars are where YAML 1.1 resolution bites: text that looks like a number, a
# boolean, a date or null. Each is read as a key, a value and a sequence item.
plain_scalars = st.sampled_from(
    ["yes", "Yes", "YES", "no", "on", "Off", "y", "n", "True", "FALSE", "tRUE", "~", "null", "NULL", "nUll",
     "0", "-0", "+12", "012", "0o12", "08", "0x1f", "-0xFF", "0b101", "1_000", "190:20:30", "-1:30", "1:60",
     "1.5", "-1.", ".5", "1e3", "1.0e+3", "1_0.5", "190:20:30.15", ".inf", "-.Inf", "+.INF", ".nan", ".NaN",
     "2001-12-14", "2001-1-1", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "2002-12-14T01:02:03Z",
     "<<", "=", "a b", "C42", "rule_1"]
) | st.text(alphabet="0123456789-+._:eExXoObBinfaNtrueysl~Z T", min_size=1, max_size=10)


@settings(max_examples=500, deadline=None)
@given(text=plain_scalars)
def test_plain_scalars_resolve_as_pyyaml_resolves_them(text: str) -> None:
    document = f"key: {text}\n{text}: 1\nlist: [{text}, '{text}']\n"
    doc = read(document)
    try:
        expected = yaml.load(document, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, ValueError):
        assert [d.code for d in doc.diagnostics] == ["E001"]
        return
    assert not [d for d in doc.diagnostics if d.code == "E001"]
    assert same(doc.value, expected)
    assert same(doc.value, yaml.load(document, Loader=yaml.SafeLoader))
    assert_same_tree(doc.node, pyyaml_node(document))


# -- values: documents written by hand ---------------------------------------------------

TRICKY = {
    "anchors": "base: &b {a: 1, b: [x, y]}\nother: *b\nlist: &l [1, 2]\nagain: [*l, *l]\n",
    "scalar anchors": "a: &s hello\nb: *s\nc: &n 12\nd: *n\n",
    "anchor in text": "note: R&D\nlist: [a&b]\n",
    "merge": "base: &b {a: 1, b: 2}\nchild:\n  <<: *b\n  b: 3\n  c: 4\n",
    "merge list": "x: &x {a: 1}\ny: &y {b: 2, a: 5}\nz:\n  <<: [*x, *y]\n  c: 3\n",
    "merge of merge": "a: &a {p: 1}\nb: &b {<<: *a, q: 2}\nc: {<<: *b, r: 3}\n",
    "value key": "a: {=: 1, b: 2}\n",
    "timestamps": "d: 2001-12-14\nt: 2001-12-14t21:59:43.10-05:00\nu: 2001-12-14 21:59:43.10\n"
    "z: 2002-12-14T01:02:03Z\ns: '2001-12-14'\n",
    "booleans": "- yes\n- no\n- on\n- off\n- Yes\n- NO\n- True\n- FALSE\n- y\n- n\n- 'yes'\n- oN\n",
    "nulls": "- ~\n- null\n- Null\n- NULL\n-\n- nULL\n- ''\n",
    "ints": "- 0o14\n- 014\n- 0x1F\n- -0x1f\n- 0b1010\n- 1_000\n- 190:20:30\n- -190:20:30\n- +12\n- 0\n- -0\n- 08\n",
    "floats": "- 1.5\n- 1e3\n- 1.0e+3\n- .5\n- -.inf\n- .Inf\n- +.INF\n- .nan\n- .NaN\n- 190:20:30.15\n- 1_000.5\n- 1.\n",
    "explicit tags": "a: !!str 1\nb: !!int '7'\nc: !!float '2'\nd: !!bool 'yes'\ne: !!null ''\nf: !!str\ng: ! 12\n"
    "h: !!timestamp 2001-01-01\ni: !!seq [1]\nj: !!map {k: v}\n",
    "binary": "b: !!binary |\n  R0lGODlhDAAMAIQAAP//9/X17unp5WZmZgAAAOfn515eXvPz7Y6OjuDg4J+fn5\n"
    "  OTk6enp56enmleECcgggoBADs=\n",
    "set": "s: !!set {a, b}\n",
    "omap": "o: !!omap [{a: 1}, {b: 2}]\n",
    "pairs": "p: !!pairs [{a: 1}, {a: 2}]\n",
    "empty": "",
    "only a comment": "# nothing here\n",
    "explicit empty document": "---\n...\n",
    "scalar document": "just text\n",
    "int document": "42\n",
    "empty collections": "a: {}\nb: []\nc: [{}, []]\n",
    "keys of many types": "1: a\n1.5: b\ntrue: c\n~: d\n2001-01-01: e\n!!binary aGk=: f\n",
    "keys equal as values": "1: a\ntrue: b\n1.0: c\n",
    "int keys of different text": "1: a\n01: b\n0x1: c\n",
    "quoted and block styles": "a: 'single ''q'''\nb: \"double \\t \\u00e9\"\nc: |\n  literal\n  block\nd: >\n  folded\n  text\n",
    "unicode": "é: ü\nlist: [日本, \"\\u2028\"]\n",
    "nesting": "a: " + "[" * 300 + "]" * 300 + "\n",
    "policy": "purposes:\n  p:\n    description: x\n    context:\n      amount: {type: number}\n"
    "    evidence: [risk_score]\n    rules:\n      - if: 'context.amount > 10'\n        then: fail\n"
    "        reason: r1\n        conditions: [review]\n",
}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_tricky_documents_read_as_pyyaml_reads_them(text: str) -> None:
    assert_reads_like_pyyaml(text)


def test_nesting_deeper_than_python_recursion_reads_as_libyaml_allows() -> None:
    depth = 990  # libyaml refuses more than 1,000 levels
    doc = read("a: " + "[" * depth + "]" * depth + "\n")
    assert doc.diagnostics == []
    value = doc.value["a"]
    for _ in range(depth - 1):
        assert type(value) is list and len(value) == 1
        value = value[0]
    assert value == []


def test_aliases_are_the_same_objects() -> None:
    doc = assert_reads_like_pyyaml(TRICKY["anchors"])
    assert doc.value["other"] is doc.value["base"]
    assert doc.value["again"][0] is doc.value["again"][1] is doc.value["list"]


@pytest.mark.parametrize(
    "text, check",
    [
        ("&a [1, *a]\n", lambda v: v[1] is v),
        ("&m {name: m, self: *m}\n", lambda v: v["self"] is v),
        ("a: &l [x, {back: *l}]\n", lambda v: v["a"][1]["back"] is v["a"]),
    ],
)
def test_recursive_documents_read_as_pyyaml_reads_them(text: str, check: Any) -> None:
    found: list[YamlDocument] = []
    reader = threading.Thread(target=lambda: found.append(read(text)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert found, "read_yaml did not return"
    assert found[0].diagnostics == []
    assert check(found[0].value)
    assert same(found[0].value, yaml.load(text, Loader=yaml.SafeLoader))


# -- diagnostics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "a: 1\nb:\n  c: 1\n  c: 2\n  d:\n    - e: 1\n      e: 2\na: 3\n",
            [
                ("E003", 8, 1, "duplicate key `a` (first defined on line 1)"),
                ("E003", 4, 3, "duplicate key `c` (first defined on line 3)"),
                ("E003", 7, 7, "duplicate key `e` (first defined on line 6)"),
            ],
        ),
        ('1: a\n"1": b\n', [("E003", 2, 1, "duplicate key `1` (first defined on line 1)")]),
        (
            "x: {k: 1, k: 2, j: 3, j: 4}\n",
            [
                ("E003", 1, 11, "duplicate key `k` (first defined on line 1)"),
                ("E003", 1, 23, "duplicate key `j` (first defined on line 1)"),
            ],
        ),
        # reported once, however often the mapping is used
        ("base: &b {k: 1, k: 2}\nuse: *b\nagain: [*b]\n", [("E003", 1, 17, "duplicate key `k` (first defined on line 1)")]),
        ("a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n", [("E003", 5, 3, "duplicate key `<<` (first defined on line 4)")]),
        ("a: &a {x: 1}\nc:\n  <<: *a\n  x: 2\n  x: 3\n", [("E003", 5, 3, "duplicate key `x` (first defined on line 4)")]),
        (
            "a: 1\na: 2\nb: !!int x\n",
            [
                ("E003", 2, 1, "duplicate key `a` (first defined on line 1)"),
                ("E001", 1, 1, "invalid YAML: invalid literal for int() with base 10: 'x'"),
            ],
        ),
        ("1: a\ntrue: b\n01: c\n", []),
    ],
)
def test_duplicate_keys_are_reported_where_they_are(text: str, expected: list[tuple[str, int, int, str]]) -> None:
    doc = read(text)
    assert reported(doc) == expected
    if not any(code == "E001" for code, *_ in expected):
        assert same(doc.value, yaml.load(text, Loader=yaml.SafeLoader))
        assert_same_tree(doc.node, pyyaml_node(text))


def test_duplicate_report_shows_the_source_line() -> None:
    (d,) = read("a:\n  bb: 1\n  bb: 2\n").diagnostics
    assert (d.source_line, d.end_col, d.file) == ("  bb: 2", 5, "p.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: [1, 2\nb: 3\n", ("E001", 2, 2, "while parsing a flow sequence did not find expected ',' or ']'")),
        ("a:\n  b: 1\n c: 2\n", ("E001", 3, 2, "while parsing a block mapping did not find expected key")),
        ("a: 1\n---\nb: 2\n", ("E001", 2, 1, "expected a single document in the stream but found another document")),
        ("a: *nope\n", ("E001", 1, 4, "found undefined alias")),
        ("a: !foo bar\n", ("E001", 1, 4, "could not determine a constructor for the tag '!foo'")),
        ("a: =\n", ("E001", 1, 4, "could not determine a constructor for the tag 'tag:yaml.org,2002:value'")),
        ("a: !!int abc\n", ("E001", 1, 1, "invalid YAML: invalid literal for int() with base 10: 'abc'")),
        ("a: !!binary 'é'\n", ("E001", 1, 4, "failed to convert base64 data into ascii: 'ascii' codec can't encode character '\\xe9' in position 0: ordinal not in range(128)")),
        ("a: !!map [1, 2]\n", ("E001", 1, 4, "expected a mapping node, but found sequence")),
        ("? [a, b]\n: 1\n", ("E001", 1, 3, "while constructing a mapping found unhashable key")),
        ("a: 1\nb: {<<: 3}\n", ("E001", 2, 9, "while constructing a mapping expected a mapping or list of mappings for merging, but found scalar")),
        ("a: !!bool x\n", ("E001", 1, 1, "invalid YAML: a value its tag cannot hold (KeyError('x'))")),
        ("a: !!timestamp nope\n", ("E001", 1, 1, "invalid YAML: a value its tag cannot hold "
                                   "(AttributeError(\"'NoneType' object has no attribute 'groupdict'\"))")),
    ],
)
def test_unreadable_documents_are_one_e001(text: str, expected: tuple[str, int, int, str]) -> None:
    doc = read(text)
    assert reported(doc) == [expected]
    assert (doc.value, doc.node) == (None, None)


# -- positions -----------------------------------------------------------------------------

POLICY = """\
purposes:
  synth:
    context:
      country: {type: string}
    rules:
      - if: 'context.country == "C1"'
        then: fail
        reason: rule_1
      - if: "risk_score >= 2"
        then: pass
        reason: rule_2
"""


def test_locate_finds_values_and_keys() -> None:
    doc = read(POLICY)
    then = doc.locate(("purposes", "synth", "rules", 1, "then"))
    assert isinstance(then, yaml.ScalarNode)
    assert (then.value, doc.position(then)) == ("pass", Position(10, 15))
    key = doc.locate(("purposes", "synth", "context", "country"), key=True)
    assert isinstance(key, yaml.ScalarNode)
    assert (key.value, doc.position(key)) == ("country", Position(4, 7))
    kind = doc.locate(("purposes", "synth", "context", "country", "type"))
    assert isinstance(kind, yaml.ScalarNode)
    assert (kind.value, doc.position(kind)) == ("string", Position(4, 23))


def test_locate_stops_at_the_deepest_node_that_exists() -> None:
    doc = read(POLICY)
    rules = doc.locate(("purposes", "synth", "rules"))
    assert isinstance(rules, yaml.SequenceNode)
    assert doc.locate(("purposes", "synth", "rules", 7, "then")) is rules
    rule = doc.locate(("purposes", "synth", "rules", 0))
    assert isinstance(rule, yaml.MappingNode)
    assert doc.locate(("purposes", "synth", "rules", 0, "else")) is rule
    assert doc.position(rule) == Position(6, 9)


def test_source_text_keeps_the_quotes_and_the_position() -> None:
    doc = read(POLICY)
    single = doc.locate(("purposes", "synth", "rules", 0, "if"))
    double = doc.locate(("purposes", "synth", "rules", 1, "if"))
    assert isinstance(single, yaml.ScalarNode) and isinstance(double, yaml.ScalarNode)
    first, second = doc.source_text(single), doc.source_text(double)
    assert (first.text, first.raw, first.start) == ('context.country == "C1"', "'context.country == \"C1\"'", Position(6, 13))
    assert (second.text, second.raw, second.start) == ("risk_score >= 2", '"risk_score >= 2"', Position(9, 13))


def test_diagnostic_points_at_a_node() -> None:
    doc = read(POLICY)
    node = doc.locate(("purposes", "synth", "rules", 0, "reason"))
    d = doc.diagnostic("E999", "something", node)
    assert (d.line, d.col, d.end_col, d.source_line) == (8, 17, 23, "        reason: rule_1")
