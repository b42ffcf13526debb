"""Reading YAML while keeping every value's position in the file.

PyYAML composes a node tree (each node has start/end marks), which we construct into
plain Python values ourselves, so that any later problem (a pydantic error, a bad
expression) can be reported at the line and column it came from. Duplicate keys,
which PyYAML silently collapses, are reported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from dsl import Diagnostic, Position, SourceText

try:  # libyaml is several times faster on large policy sets
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


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

    def locate(self, loc: Sequence[int | str], key: bool = False) -> yaml.Node | None:
        """The node at a pydantic-style location path; the key node when `key`."""
        node = self.node
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


def _check_duplicates(doc: YamlDocument, node: yaml.Node) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
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


def read_yaml(file: str, text: str) -> YamlDocument:
    """Parse YAML text; problems become diagnostics, never exceptions."""
    doc = YamlDocument(file=file, text=text, lines=text.splitlines())
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_duplicates(doc, node)
                value = loader.construct_document(node)
            else:
                value = None
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
    doc.node, doc.value = node, value
    return doc


__all__ = ["YamlDocument", "read_yaml"]
