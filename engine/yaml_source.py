"""Reading YAML while keeping every value's position in the file.

The first stage of `engine.load()`: libyaml (through PyYAML) composes a node tree, each
node with start/end marks, which we construct into plain Python values ourselves, so
that any later problem (a pydantic error, a bad expression) can be reported at the line
and column it came from. Duplicate keys, which PyYAML silently collapses, are reported
here.

Values are exactly those of `yaml.load(text, Loader=yaml.CSafeLoader)`. A policy file
of 100,000 rules is mostly plain strings in plain mappings and sequences, so one pass
builds those directly and notices duplicate keys on the way; any node it does not
handle (a merge key `<<`, a tag such as `!!set`, a value PyYAML would reject) sends the
whole document back to PyYAML's constructor, so the rare cases keep PyYAML's exact
results and error messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dsl import Diagnostic, Position, SourceText

try:  # libyaml is several times faster on large policy sets
    from yaml import CSafeLoader as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Parser  # type: ignore[assignment]

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

# SafeConstructor's constructors that read nothing but the scalar node they are given;
# the fast pass calls them directly. Every other tag is left to PyYAML.
_SCALAR_CONSTRUCTORS: dict[str, Callable[..., Any]] = {
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:binary": SafeConstructor.construct_yaml_binary,
    "tag:yaml.org,2002:timestamp": SafeConstructor.construct_yaml_timestamp,
}
_BUILT_DIRECTLY = {
    _STR: SafeConstructor.construct_yaml_str,
    _SEQ: SafeConstructor.construct_yaml_seq,
    _MAP: SafeConstructor.construct_yaml_map,
}


@dataclass(slots=True)
class YamlDocument:
    """A parsed YAML file: its value, its node tree, and what went wrong reading it."""

    file: str
    text: str
    lines: list[str]
    value: Any = None
    node: yaml.Node | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def position(self, node: yaml.Node) -> Position:
        return Position(node.start_mark.line + 1, node.start_mark.column + 1)

    def diagnostic(
        self, code: str, message: str, node: yaml.Node | None, severity: str = "error", hint: str | None = None
    ) -> Diagnostic:
        pos = self.position(node) if node is not None else Position(1, 1)
        end_col = None
        if node is not None and node.end_mark.line == node.start_mark.line:
            end_col = node.end_mark.column + 1
        return Diagnostic(
            code=code,
            message=message,
            file=self.file,
            line=pos.line,
            col=pos.col,
            severity=severity,  # type: ignore[arg-type]
            hint=hint,
            source_line=self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else None,
            end_col=end_col,
        )

    def source_text(self, node: yaml.ScalarNode) -> SourceText:
        """The scalar's text with the file position of each of its characters."""
        start, end = node.start_mark.index, node.end_mark.index
        return SourceText(
            text=node.value, file=self.file, file_lines=self.lines, raw=self.text[start:end], start=self.position(node)
        )

    def locate(
        self, loc: Sequence[int | str], key: bool = False, start: yaml.Node | None = None
    ) -> yaml.Node | None:
        """The node at a pydantic-style location path (from `start`, else the document);
        the key node when `key`."""
        node = self.node if start is None else start
        for i, step in enumerate(loc):
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == step:
                        node = key_node if key and i == len(loc) - 1 else value_node
                        break
                else:
                    return node
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
            else:
                return node
        return node


def _plain_resolver(resolver: Any) -> Callable[[type[Node], str | None, Any], str | None]:
    """`resolver.resolve` when it has no path resolvers, so that a node's tag depends
    on its kind and text alone: the implicit resolvers are looked up once per first
    character, not joined into a new list per scalar."""
    implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = resolver.yaml_implicit_resolvers
    wildcard = tuple(implicit_resolvers.get(None, ()))
    by_first_char = {first: (*found, *wildcard) for first, found in implicit_resolvers.items() if first is not None}
    candidates = by_first_char.get
    defaults = {
        ScalarNode: resolver.DEFAULT_SCALAR_TAG,
        SequenceNode: resolver.DEFAULT_SEQUENCE_TAG,
        MappingNode: resolver.DEFAULT_MAPPING_TAG,
    }

    def resolve(kind: type[Node], value: str | None, implicit: Any) -> str | None:
        if kind is ScalarNode and implicit[0]:
            for tag, regexp in candidates(value[:1], wildcard):  # type: ignore[index]
                if regexp.match(value):  # type: ignore[arg-type]
                    return tag
        return defaults.get(kind)

    return resolve


def _nothing(*args: Any) -> None:
    pass


class _Loader(_Parser):
    """The safe loader, with less Python work per node for the composer.

    The composer calls the resolver's `descend_resolver`, `resolve` and
    `ascend_resolver` for every node. Without path resolvers (SafeLoader has none) the
    first and last do nothing and `resolve` can be a closure over prepared tables.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        if not self.yaml_path_resolvers:
            # Instance attributes: the composer finds them before the class's methods.
            self.resolve = _plain_resolver(self)  # type: ignore[method-assign]
            self.descend_resolver = self.ascend_resolver = _nothing  # type: ignore[method-assign, assignment]


class _Unhandled(Exception):
    """The fast pass met a node it leaves to PyYAML's constructor."""


def _construct(root: Node, loader: Any, shared: bool) -> tuple[Any, bool]:
    """The document's value, and whether some mapping may repeat a key.

    Builds what `SafeConstructor.construct_document` would, in one recursive pass, for
    documents made of plain mappings, sequences and the scalars of
    `_SCALAR_CONSTRUCTORS`; raises `_Unhandled` at anything else. `shared`: the text
    may hold anchors, so a node may be reached more than once (or from inside itself)
    and must be built once.
    """
    constructors = loader.yaml_constructors
    if any(constructors.get(tag) is not fn for tag, fn in _BUILT_DIRECTLY.items()):
        raise _Unhandled
    scalars = {tag: fn for tag, fn in _SCALAR_CONSTRUCTORS.items() if constructors.get(tag) is fn}
    built: dict[int, Any] = {}
    repeats = False

    def scalar(node: Node) -> Any:
        fn = scalars.get(node.tag)
        if fn is None:
            raise _Unhandled
        return fn(loader, node)

    def collection(node: Node) -> Any:
        nonlocal repeats
        if shared and id(node) in built:
            return built[id(node)]
        cls = type(node)
        if cls is MappingNode and node.tag == _MAP:
            mapping: dict[Any, Any] = {}
            if shared:
                built[id(node)] = mapping
            pairs = node.value
            only_str_keys = True
            for key_node, value_node in pairs:
                if type(key_node) is not ScalarNode:
                    raise _Unhandled  # unhashable for SafeLoader: PyYAML says so
                if key_node.tag == _STR:
                    key = key_node.value
                else:
                    key = scalar(key_node)
                    only_str_keys = False
                if type(value_node) is ScalarNode:
                    mapping[key] = value_node.value if value_node.tag == _STR else scalar(value_node)
                else:
                    mapping[key] = collection(value_node)
            # A repeated key is a repeated key text (`1` and `"1"` repeat, `1` and `01`
            # do not); with string keys only, text and key are the same thing.
            if len(mapping) != len(pairs) or (
                not only_str_keys and len({key_node.value for key_node, _ in pairs}) != len(pairs)
            ):
                repeats = True
            return mapping
        if cls is SequenceNode and node.tag == _SEQ:
            sequence: list[Any] = []
            if shared:
                built[id(node)] = sequence
            for item in node.value:
                if type(item) is ScalarNode:
                    sequence.append(item.value if item.tag == _STR else scalar(item))
                else:
                    sequence.append(collection(item))
            return sequence
        raise _Unhandled

    if type(root) is ScalarNode:
        value = root.value if root.tag == _STR else scalar(root)
    else:
        value = collection(root)
    return value, repeats


def _check_duplicates(doc: YamlDocument, node: yaml.Node) -> None:
    # Each node once, so that aliases can neither repeat a report nor loop forever.
    visited: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    first = seen.get(key_node.value)
                    if first is not None:
                        doc.diagnostics.append(
                            doc.diagnostic(
                                "E003",
                                f"duplicate key `{key_node.value}` (first defined on line {first.start_mark.line + 1})",
                                key_node,
                            )
                        )
                    else:
                        seen[key_node.value] = key_node
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _construct_document(doc: YamlDocument, node: yaml.Node, loader: Any) -> Any:
    """The value of `node`, after reporting its duplicate keys in `doc`."""
    try:
        # Only an anchor (`&name`) lets one node be reached from two places.
        value, repeats = _construct(node, loader, shared="&" in doc.text)
    except Exception:
        # `_Unhandled`, an error PyYAML reports in its own words, or nesting deeper than
        # Python's recursion limit. The nodes are untouched: PyYAML's constructor gives
        # its own value or error.
        _check_duplicates(doc, node)
        return loader.construct_document(node)
    if repeats:
        _check_duplicates(doc, node)
    return value


def read_yaml(file: str, text: str) -> YamlDocument:
    """Parse YAML text; problems become diagnostics, never exceptions."""
    doc = YamlDocument(file=file, text=text, lines=text.splitlines())
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            value = _construct_document(doc, node, loader) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        message = " ".join(part for part in (err.context, err.problem) if part) or "invalid YAML"
        doc.diagnostics.append(
            Diagnostic(
                code="E001",
                message=message,
                file=file,
                line=line,
                col=col,
                source_line=doc.lines[line - 1] if 0 < line <= len(doc.lines) else None,
            )
        )
        return doc
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        doc.diagnostics.append(Diagnostic(code="E001", message=f"invalid YAML: {err}", file=file))
        return doc
    except (KeyError, AttributeError, TypeError) as err:
        # PyYAML's constructors fail this way on a scalar its explicit tag cannot hold
        # (`!!bool x`, `!!timestamp nope`)
        doc.diagnostics.append(
            Diagnostic(code="E001", message=f"invalid YAML: a value its tag cannot hold ({err!r})", file=file)
        )
        return doc
    doc.node, doc.value = node, value
    return doc


__all__ = ["YamlDocument", "read_yaml"]
