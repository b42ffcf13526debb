"""Formatter: the canonical layout of policy and test files, comments kept.

`idgw policy fmt` rewrites files through ruamel.yaml's round-trip mode, which keeps
comments, quoting and flow style. On top of that it

- orders keys canonically (purpose: description, consent, context, evidence, rules;
  rule: if, then, else, reason, conditions; unknown keys keep their place after them),
- writes the file's structure in block style (the file, purposes, rules, each rule,
  a purpose's context; a test file's cases), so one policy has one layout whoever wrote
  it; short lists and mappings inside (`consent: [a, b]`) keep their style,
- indents by two spaces, sequences indented under their key,
- normalises the spacing of `if:` expressions (one space around binary operators and
  after commas, none inside brackets or before a call's parenthesis).

Expressions are re-spaced token by token, never re-printed from the AST, and the result
must parse to the same tree or the original text is kept. Reordering keys moves the
comment lines that sat above an entry along with it. Formatting is idempotent, and a
file whose data would change (beyond expression spacing) is refused, not written.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

import dsl
from dsl import Diagnostic
from engine.loader import discover, is_test_file
from engine.yaml_source import read_yaml

FileKind = Literal["policy", "test"]

PURPOSE_KEYS = ("description", "consent", "context", "evidence", "rules")
RULE_KEYS = ("if", "then", "else", "reason", "conditions")
TEST_FILE_KEYS = ("purpose", "cases")
CASE_KEYS = ("name", "purpose", "input", "expect")
EXPECT_KEYS = ("status", "reason", "conditions")


# -- expression spacing ----------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%)
      | (?P<punct>[()\[\],.])""",
    re.VERBOSE,
)
_BINARY_WORDS = {"and", "or", "in"}
_OPENERS = {"(", "[", ","}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # str num name word op punct
    text: str
    gap: str  # the whitespace before it in the original


def _tokens(text: str) -> list[_Tok] | None:
    out: list[_Tok] = []
    gap = ""
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "ws":
            gap += value
            continue
        if kind == "name" and value.lower() in (*_BINARY_WORDS, "not"):
            kind = "word"
        out.append(_Tok(kind, value, gap))
        gap = ""
    return out


def _is_operator(tok: _Tok) -> bool:
    return tok.kind == "op" or (tok.kind == "word" and tok.text.lower() in (*_BINARY_WORDS, "not"))


def _separator(prev: _Tok | None, cur: _Tok, prev_unary: bool) -> str:
    if prev is None:
        return ""
    if cur.text in (")", "]", ",", ".") and cur.kind == "punct":
        return ""
    if prev.kind == "punct" and prev.text in ("(", "[", "."):
        return ""
    if prev_unary:
        return ""
    if cur.kind == "punct" and cur.text == "(" and prev.kind == "name":
        return ""  # a call: len(x)
    if cur.kind == "punct" and cur.text == "[" and (
        prev.kind in ("name", "str", "num") or (prev.kind == "punct" and prev.text in (")", "]"))
    ):
        return ""  # an index: context.items[0]
    return " "


def normalize_expression(text: str) -> str:
    """`context.amount>10000  AND len( x )>0` -> `context.amount > 10000 AND len(x) > 0`.

    Line breaks (and the indentation after them) of a multi-line expression are kept.
    Text that does not tokenize, or would parse differently afterwards, is returned as is.
    """
    tokens = _tokens(text)
    if not tokens:
        return text
    parts: list[str] = []
    prev: _Tok | None = None
    prev_unary = False
    for tok in tokens:
        sep = _separator(prev, tok, prev_unary)
        if "\n" in tok.gap and prev is not None:
            sep = "\n" + tok.gap.rsplit("\n", 1)[1]
        parts.append(sep + tok.text)
        prev_unary = tok.kind == "op" and tok.text == "-" and (
            prev is None or _is_operator(prev) or (prev.kind == "punct" and prev.text in _OPENERS)
        )
        prev = tok
    # Surrounding whitespace is the YAML scalar's business (a block scalar's final newline).
    result = text[: len(text) - len(text.lstrip())] + "".join(parts) + text[len(text.rstrip()) :]
    if result == text or _shape_of(text) is None or _shape_of(text) != _shape_of(result):
        return text
    return result


def _shape(node: object) -> object:
    """An AST without its source spans, for comparing two parses."""
    if is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__, *(
            _shape(getattr(node, f.name)) for f in fields(node) if f.name not in ("span", "name_span")
        ))
    if isinstance(node, tuple):
        return tuple(_shape(item) for item in node)
    return node


def _shape_of(text: str) -> object:
    try:
        return _shape(dsl.parse(str(text)))
    except dsl.ParseFailure:
        return None


# -- comments that travel with their entry ---------------------------------------------
# ruamel.yaml stores the comment lines *between* two entries on the entry above (as the
# tail of its end-of-line comment). Moving keys would then carry a comment away from the
# entry it describes, so before reordering we detach each such block and remember the
# entry it precedes; afterwards we re-attach it above that entry's new position.
_Entry = tuple[Any, Any]  # (container, key or index)


def _is_block(value: object) -> bool:
    return isinstance(value, (CommentedMap, CommentedSeq)) and len(value) > 0 and not value.fa.flow_style()


def _entries(container: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(container, CommentedMap):
        yield from ((container, key) for key in container)
    elif isinstance(container, CommentedSeq):
        yield from ((container, index) for index in range(len(container)))


def _events(root: Any, column: int = 0) -> Iterator[tuple[str, _Entry, int]]:
    """Document order: ("enter", entry, column) when an entry starts, ("slot", entry, column)
    where the comment after its line is stored (after a scalar value, or after `key:`
    when a block collection follows). Columns are those of the canonical layout."""
    for entry in _entries(root):
        container, key = entry
        value = container[key]
        yield "enter", entry, column
        if _is_block(value):
            if isinstance(container, CommentedMap):
                yield "slot", entry, column
            yield from _events(value, column + 2)
        else:
            yield "slot", entry, column


def _slot_index(container: Any) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def _get_token(entry: _Entry) -> CommentToken | None:
    container, key = entry
    item = container.ca.items.get(key)
    if not item:
        return None
    token = item[_slot_index(container)]
    return token if isinstance(token, CommentToken) else None


def _split(value: str) -> tuple[str, str]:
    """A slot's text -> (end-of-line comment with its newline, the comment lines after)."""
    if value.startswith("#"):
        eol, _, rest = value.partition("\n")
        return eol + "\n", rest
    return "", value[1:] if value.startswith("\n") else value


def _set_rest(entry: _Entry, rest: str) -> None:
    token = _get_token(entry)
    eol = _split(token.value)[0] if token is not None else ""
    if token is not None:
        token.value = (eol or "\n") + rest
        return
    if not rest:
        return
    container, key = entry
    item = container.ca.items.setdefault(key, [None, None, None, None])
    item[_slot_index(container)] = CommentToken("\n" + rest, CommentMark(0), None)


def _take_leading(entry: _Entry) -> str:
    """Comment lines between `key:` and a block collection's first entry, removed.

    Without an end-of-line comment on `key:`, ruamel keeps them on the collection
    itself (shared with the parent's fourth slot) rather than in the key's slot.
    """
    container, key = entry
    value = container[key]
    if not (isinstance(container, CommentedMap) and _is_block(value)):
        return ""
    comment = value.ca.comment
    tokens = comment[1] if comment and len(comment) > 1 and isinstance(comment[1], list) else []
    text = "".join(t.value for t in tokens if isinstance(t, CommentToken))
    if tokens:
        tokens.clear()
        item = container.ca.items.get(key)
        if item and len(item) > 3:
            item[3] = None
    return text


def _take_before(entry: _Entry) -> str:
    """Comment lines ruamel attached *before* a key (after a flow collection), removed."""
    container, key = entry
    if not isinstance(container, CommentedMap):
        return ""
    item = container.ca.items.get(key)
    if not item or not isinstance(item[1], list):
        return ""
    text = "".join(t.value for t in item[1] if isinstance(t, CommentToken))
    item[1] = None
    return text


def _detach(root: Any) -> tuple[dict[tuple[int, Any], str], str]:
    """Take every between-entries comment block; key it by the entry it precedes."""
    owners: dict[tuple[int, Any], str] = {}
    pending: tuple[_Entry, str] | None = None
    for kind, entry, _ in _events(root):
        if kind == "slot":
            token = _get_token(entry)
            rest = _split(token.value)[1] if token is not None else ""
            rest += _take_leading(entry)
            if rest:
                _set_rest(entry, "")
                pending = (entry, rest)
        else:
            leading = (pending[1] if pending is not None else "") + _take_before(entry)
            pending = None
            if leading:
                owners[(id(entry[0]), entry[1])] = leading
    trailer = pending[1] if pending is not None else ""
    return owners, trailer


def _indent(block: str, column: int) -> str:
    """Comment lines re-indented to the entry they describe; blank lines kept."""
    lines = block.split("\n")
    return "\n".join(" " * column + line.strip() if line.strip() else "" for line in lines)


def _attach(root: Any, owners: dict[tuple[int, Any], str]) -> str:
    """Put each detached block back above its entry; a block for the document's first
    entry is returned, to go before the document."""
    header = ""
    last_slot: _Entry | None = None
    for kind, entry, column in _events(root):
        if kind == "slot":
            last_slot = entry
            continue
        rest = owners.pop((id(entry[0]), entry[1]), None)
        if rest is None:
            continue
        rest = _indent(rest, column if last_slot is not None else 0)
        if last_slot is None:
            header += rest
        else:
            token = _get_token(last_slot)
            current = _split(token.value)[1] if token is not None else ""
            _set_rest(last_slot, current + rest)
    return header


# -- canonical order -------------------------------------------------------------------
def _reorder(mapping: Any, order: Sequence[str]) -> None:
    if not isinstance(mapping, CommentedMap):
        return
    keys = list(mapping)
    wanted = [k for k in order if k in mapping] + [k for k in keys if k not in order]
    if wanted != keys:
        for key in wanted:
            mapping.move_to_end(key)


def _block(*nodes: Any) -> None:
    """Write these mappings and sequences in block style (one entry a line)."""
    for node in nodes:
        if isinstance(node, (CommentedMap, CommentedSeq)):
            node.fa.set_block_style()


def _canonical(data: Any, kind: FileKind) -> None:
    """Key order and block style for the file's structure: the file, its purposes, each
    purpose's rules and context, each rule (test files: the cases). Short lists and
    mappings inside them, such as `consent: [a, b]` or `amount: {type: number}`, keep
    the style they were written in."""
    if not isinstance(data, CommentedMap):
        return
    _block(data)
    if kind == "policy":
        _reorder(data, ("purposes",))
        purposes = data.get("purposes")
        if not isinstance(purposes, CommentedMap):
            return
        _block(purposes)
        for purpose in purposes.values():
            _reorder(purpose, PURPOSE_KEYS)
            _block(purpose)
            rules = purpose.get("rules") if isinstance(purpose, CommentedMap) else None
            if isinstance(purpose, CommentedMap):
                _block(rules, purpose.get("context"))
            for rule in rules if isinstance(rules, CommentedSeq) else ():
                _reorder(rule, RULE_KEYS)
                _block(rule)
                condition = rule.get("if") if isinstance(rule, CommentedMap) else None
                if isinstance(condition, str):
                    formatted = normalize_expression(condition)
                    if formatted != condition:
                        rule["if"] = _same_style(condition, formatted)
    else:
        _reorder(data, TEST_FILE_KEYS)
        cases = data.get("cases")
        _block(cases)
        for case in cases if isinstance(cases, CommentedSeq) else ():
            _reorder(case, CASE_KEYS)
            _block(case)
            if isinstance(case, CommentedMap):
                _reorder(case.get("expect"), EXPECT_KEYS)


def _same_style(old: str, new: str) -> str:
    """Keep a scalar's quoting or block style: ruamel marks it with a str subclass."""
    if type(old) is str:
        return new
    return type(old)(new)


# -- files -----------------------------------------------------------------------------
def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096  # never fold long lines
    return y


_DOC_START = re.compile(r"^---[ \t]*(#.*)?$")


def _split_header(text: str) -> tuple[str, str]:
    """Leading comments up to an explicit `---` are kept verbatim (ruamel drops them)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _DOC_START.match(stripped):
            return "".join(lines[: i + 1]), "".join(lines[i + 1 :])
        if stripped and not stripped.startswith("#"):
            break
    return "", text


class FormatError(Exception):
    """A file cannot be formatted; `.diagnostic` says why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.render())
        self.diagnostic = diagnostic


def _comparable(value: Any, kind: FileKind) -> Any:
    """File data with expressions normalised: what formatting must leave unchanged."""
    if kind == "policy" and isinstance(value, dict):
        for purpose in (value.get("purposes") or {}).values():
            for rule in (purpose.get("rules") or []) if isinstance(purpose, dict) else []:
                if isinstance(rule, dict) and isinstance(rule.get("if"), str):
                    rule["if"] = normalize_expression(rule["if"])
    return value


def format_text(text: str, kind: FileKind = "policy", file: str = "<input>") -> str:
    """The canonical form of one file's text. Raises `FormatError` for invalid YAML."""
    checked = read_yaml(file, text)
    errors = [d for d in checked.diagnostics if d.severity == "error"]
    if errors:
        raise FormatError(errors[0])
    if checked.value is None:
        return text
    header, body = _split_header(text)
    y = _yaml()
    try:
        data = y.load(body)
    except YAMLError as err:  # pragma: no cover - PyYAML accepted it above
        raise FormatError(Diagnostic(code="E001", message=f"invalid YAML: {err}", file=file)) from None
    owners, trailer = _detach(data)
    _canonical(data, kind)
    header += _attach(data, owners)
    out = io.StringIO()
    y.dump(data, out)
    result = header + out.getvalue().rstrip("\n") + "\n" + trailer
    if not result.endswith("\n"):
        result += "\n"
    before = _comparable(yaml.safe_load(text), kind)
    after = _comparable(yaml.safe_load(result), kind)
    if before != after:  # pragma: no cover - a formatter bug must never change a policy
        raise FormatError(
            Diagnostic(code="E001", message="formatting would change the file's data; left unchanged", file=file)
        )
    return result


@dataclass(frozen=True, slots=True)
class Formatted:
    path: Path
    original: str
    formatted: str

    @property
    def changed(self) -> bool:
        return self.original != self.formatted


def files_to_format(paths: Sequence[str | Path]) -> list[tuple[Path, FileKind]]:
    """Policy and test files under the given paths (data documents are left alone)."""
    found: dict[Path, FileKind] = {}
    for path in paths:
        target = Path(path)
        if target.is_file():
            found[target] = "test" if is_test_file(Path(target.parent.name, target.name)) else "policy"
            continue
        layout = discover(target)
        for policy in layout.policies:
            found[policy] = "policy"
        for test in layout.tests:
            found[test] = "test"
    return sorted(found.items())


def format_files(paths: Sequence[str | Path]) -> tuple[list[Formatted], list[Diagnostic]]:
    """Format every policy and test file under `paths` (nothing is written)."""
    results: list[Formatted] = []
    problems: list[Diagnostic] = []
    for path, kind in files_to_format(paths):
        try:
            original = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Diagnostic(code="E004", message=f"cannot read file: {err}", file=str(path)))
            continue
        try:
            results.append(Formatted(path, original, format_text(original, kind, str(path))))
        except FormatError as err:
            problems.append(err.diagnostic)
    return results, problems


__all__ = [
    "CASE_KEYS",
    "EXPECT_KEYS",
    "PURPOSE_KEYS",
    "RULE_KEYS",
    "TEST_FILE_KEYS",
    "FormatError",
    "Formatted",
    "files_to_format",
    "format_files",
    "format_text",
    "normalize_expression",
]
