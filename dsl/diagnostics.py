"""Diagnostics shared by every stage: positions, codes, rendering, the root error.

Every problem the pipeline finds is a `Diagnostic` with a stable code, a severity and a
position in the *policy file* (not inside the expression string). Stages collect
diagnostics instead of raising on the first one; `PolicyError` carries them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]

#: Every diagnostic code with a one-line summary. `docs/diagnostics.md` documents them.
CODES: dict[str, str] = {
    # YAML and structure
    "E001": "YAML syntax error",
    "E002": "invalid policy structure",
    "E003": "duplicate key in a mapping",
    "E004": "cannot read file",
    # expressions
    "E101": "expression syntax error",
    "E102": "unknown name",
    "E103": "unknown function",
    "E104": "wrong number of arguments",
    "E105": "type mismatch",
    "E106": "expression too large or too deeply nested",
    "E107": "invalid regular expression",
    "E108": "invalid argument",
    # policy semantics
    "E201": "invalid outcome",
    "E202": "missing reason",
    "E203": "unreachable rule",
    "E204": "purpose defined twice",
    "E205": "rule needs exactly one of `if` or `else`",
    "E206": "invalid evidence declaration",
    "E207": "invalid context schema",
    "E208": "invalid data document",
    "E209": "no policy files found",
    # warnings
    "W301": "constant condition",
    "W302": "declared evidence never used",
    "W303": "fact used but not declared as evidence",
    "W304": "conditions on a rule whose outcome is not pass_with_conditions",
    "W305": "data document never referenced",
    "W306": "evidence fact not provided by the gateway",
    # test files
    "E401": "invalid test file",
    "E402": "test names an unknown purpose",
    "E403": "test input names an unknown fact",
    # notes on large purposes (info)
    "I501": "how a large purpose's rules are indexed",
    "I502": "a rule of a large purpose tried for every input",
}


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, located in a file, with a stable code."""

    code: str
    message: str
    file: str = "<input>"
    line: int = 1
    col: int = 1
    severity: Severity = "error"
    hint: str | None = None
    source_line: str | None = None
    end_col: int | None = None

    def render(self, color: bool = False) -> str:
        """`file:line:col: severity: CODE message`, then the source line and a caret."""
        sev: str = self.severity
        if color:
            shade = {"error": "1;31", "warning": "1;33"}.get(sev, "1;36")
            sev = f"\x1b[{shade}m{sev}\x1b[0m"
        head = f"{self.file}:{self.line}:{self.col}: {sev}: {self.code} {self.message}"
        lines = [head]
        excerpt = self.excerpt()
        if excerpt is not None:
            lines.extend(f"    {line}" for line in excerpt)
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)

    def excerpt(self) -> tuple[str, str] | None:
        """The source line and the caret line under the problem (None without a source)."""
        if self.source_line is None:
            return None
        text = self.source_line.rstrip("\n").expandtabs(1)
        width = 1
        if self.end_col is not None and self.end_col > self.col:
            width = min(self.end_col - self.col, max(1, len(text) - self.col + 1))
        return text, " " * (self.col - 1) + "^" * width

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.code)


class PolicyError(Exception):
    """Policies could not be loaded; `diagnostics` holds every problem found, sorted."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = sorted(diagnostics, key=lambda d: d.sort_key)
        first = self.diagnostics[0] if self.diagnostics else None
        summary = f"{first.file}:{first.line}:{first.col}: {first.code} {first.message}" if first else ""
        more = len(self.diagnostics) - 1
        if more > 0:
            summary += f" (and {more} more)"
        super().__init__(summary)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self, color: bool = False) -> str:
        return "\n".join(d.render(color) for d in self.diagnostics)


@dataclass(slots=True)
class SourceText:
    """A piece of policy text and where each of its characters sits in the file.

    `positions[i]` is the file position of character `i` of `text`. Expressions come out
    of YAML scalars (plain, quoted, block), so this mapping is how diagnostics found
    inside an expression point back into the YAML file.
    """

    text: str
    file: str = "<input>"
    positions: Sequence[Position] | None = None
    file_lines: Sequence[str] = field(default_factory=tuple)
    #: The raw file text of the scalar and where it starts: `positions` is computed from
    #: them only when a diagnostic needs it (most expressions never do).
    raw: str | None = None
    start: Position | None = None

    def position(self, offset: int) -> Position:
        if self.positions is None and self.raw is not None and self.start is not None:
            self.positions = scalar_positions(self.raw, self.text, self.start)
        if self.positions:
            if offset < len(self.positions):
                return self.positions[max(offset, 0)]
            last = self.positions[-1]
            return Position(last.line, last.col + 1 + offset - len(self.positions))
        line = self.text.count("\n", 0, offset) + 1
        start = self.text.rfind("\n", 0, offset) + 1
        return Position(line, offset - start + 1)

    def line_text(self, line: int) -> str | None:
        if self.file_lines:
            return self.file_lines[line - 1] if 0 < line <= len(self.file_lines) else None
        if self.positions or self.raw is not None:
            return None
        lines = self.text.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else None

    def diagnostic(
        self,
        code: str,
        message: str,
        start: int,
        end: int | None = None,
        severity: Severity = "error",
        hint: str | None = None,
    ) -> Diagnostic:
        pos = self.position(start)
        end_col = None
        if end is not None and end > start:
            end_pos = self.position(end - 1)
            if end_pos.line == pos.line:
                end_col = end_pos.col + 1
        return Diagnostic(
            code=code,
            message=message,
            file=self.file,
            line=pos.line,
            col=pos.col,
            severity=severity,
            hint=hint,
            source_line=self.line_text(pos.line),
            end_col=end_col,
        )


def scalar_positions(raw: str, value: str, start: Position) -> list[Position]:
    """Map each character of a parsed YAML scalar to its position in the raw source.

    `raw` is the file text from the scalar's start mark to its end mark, `value` the
    string YAML produced from it. Quotes, escapes, block indentation and folding only
    ever *remove* or *replace* characters, so walking both in order and matching each
    value character to the next equal raw character aligns them; a character that has
    no counterpart (an escape such as `\\n`) takes the previous position.
    """
    positions: list[Position] = []
    line, col = start.line, start.col
    raw_positions: list[Position] = []
    for ch in raw:
        raw_positions.append(Position(line, col))
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
    j = 0
    if raw[:1] in ("'", '"'):
        j = 1  # the opening quote is not part of the value
    elif raw[:1] in ("|", ">"):
        # A block scalar's header line (indicators, a comment) holds none of its value.
        newline = raw.find("\n")
        j = newline + 1 if newline >= 0 else len(raw)
    last = start
    for ch in value:
        k = j
        while k < len(raw) and not (raw[k] == ch or (ch == " " and raw[k] == "\n")):
            k += 1
        if k >= len(raw):
            positions.append(last)
            continue
        last = raw_positions[k]
        positions.append(last)
        j = k + 1
    return positions


__all__ = [
    "CODES",
    "Diagnostic",
    "PolicyError",
    "Position",
    "Severity",
    "SourceText",
    "scalar_positions",
]
