"""Linter: every diagnostic of one or more policy directories, in one run.

The checks themselves are the load stages of `engine.build()` (syntax, names, types,
reachability, structure, cross-file duplicates, unused evidence and data); the linter
adds the validation of test files, notes on how the rules of large purposes are
indexed (info: I501, I502), and the output formats of `idgw policy lint`: text
(`file:line:col: severity: CODE message`, source line, caret), JSON, GitHub workflow
commands and SARIF 2.1.0 (for code scanning).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from dsl import CODES, Diagnostic, Fact
from dsl.index import indexable
from engine.loader import build
from engine.policyset import PolicySet
from engine.testing import check_test_files

#: Purposes with more rules than this get notes on how their rules are indexed.
LARGE_PURPOSE = 50
#: Rules tried for every input listed one by one per purpose; the rest are counted.
LISTED_SCAN_RULES = 20
_KIND_WORDS = {
    "eq": "equality", "has": "contains", "elem": "list item", "truth": "true/false", "range": "threshold",
    "prefix": "prefix", "suffix": "suffix",
}
_INDEXABLE = (
    "an index looks up `path == constant`, `path in [...]`, `constant in path`, thresholds, "
    "`startswith`, facts and `NOT fact` (docs/policy-language.md, \"Writing large policies\")"
)


def lint(paths: Iterable[str | Path], catalogue: Mapping[str, Fact] | None = None) -> list[Diagnostic]:
    """Every diagnostic (errors and warnings) of the given directories or files, sorted,
    checked against the gateway's fact `catalogue` when given."""
    diagnostics: list[Diagnostic] = []
    seen: set[Diagnostic] = set()
    for path in paths:
        result = build(path, catalogue=catalogue)
        found = list(result.diagnostics)
        if result.policy_set is not None:
            found += check_test_files(result.policy_set)
            found += index_notes(result.policy_set)
        for diagnostic in found:
            if diagnostic not in seen:  # the same file reached through two paths
                seen.add(diagnostic)
                diagnostics.append(diagnostic)
    return sorted(diagnostics, key=lambda d: d.sort_key)


def index_notes(policy_set: PolicySet) -> list[Diagnostic]:
    """For each purpose of more than `LARGE_PURPOSE` rules: how many of its rules are
    indexed, on which keys (I501), and which rules are tried for every input (I502)."""
    notes: list[Diagnostic] = []
    sources: dict[str, list[str]] = {}
    for purpose in policy_set.purposes.values():
        total = len(purpose.rules)
        if total <= LARGE_PURPOSE:
            continue
        if purpose.file not in sources:
            try:
                sources[purpose.file] = Path(purpose.file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                sources[purpose.file] = []
        lines = sources[purpose.file]

        def line_of(number: int, lines: list[str] = lines) -> str | None:
            return lines[number - 1] if 0 < number <= len(lines) else None

        program = purpose.program
        plan = program.plan
        scan = [i for i in (plan.scan if plan is not None else range(total)) if purpose.rules[i].condition]
        if plan is None:
            message = f"purpose `{purpose.name}`: its {total:,} rules are tried in order (no index would pay)"
        else:
            keys = ", ".join(f"{key.key} ({_KIND_WORDS[key.kind]})" for key in plan.keys)
            message = f"purpose `{purpose.name}`: {plan.indexed:,} of {total:,} rules are indexed, on {keys}"
            if scan:
                message += f"; {len(scan):,} are tried for every input"
        notes.append(Diagnostic(code="I501", message=message, file=purpose.file, line=purpose.line, col=1,
                                severity="info", source_line=line_of(purpose.line)))
        conditions = program.conditions
        for index in scan[:LISTED_SCAN_RULES]:
            rule = purpose.rules[index]
            if indexable(conditions[index], policy_set.data):
                why = "its tests' keys are shared by too few rules to pay for a lookup"
                hint = "rules that share a key (the same path compared with different constants) index well"
            else:
                why = "none of its tests can be looked up"
                hint = _INDEXABLE
            notes.append(Diagnostic(code="I502", message=f"rule {index + 1} is tried for every input: {why}",
                                    file=purpose.file, line=rule.line, col=rule.column, severity="info",
                                    hint=hint, source_line=line_of(rule.line)))
        if len(scan) > LISTED_SCAN_RULES:
            rest = len(scan) - LISTED_SCAN_RULES
            notes.append(Diagnostic(
                code="I502", message=f"and {rest:,} more rules of `{purpose.name}` are tried for every input",
                file=purpose.file, line=purpose.line, col=1, severity="info", source_line=line_of(purpose.line),
            ))
    return notes


def failed(diagnostics: Sequence[Diagnostic], strict: bool = False) -> bool:
    """Errors fail a lint; with `strict`, warnings do too (notes never do)."""
    return any(d.severity == "error" or (strict and d.severity == "warning") for d in diagnostics)


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = sum(d.severity == "warning" for d in diagnostics)
    notes = len(diagnostics) - errors - warnings
    text = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}" if errors or warnings else "no problems found"
    return text + (f" ({_plural(notes, 'note')})" if notes else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def to_json(diagnostics: Sequence[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(diagnostic: Diagnostic) -> str:
    """`::error file=F,line=L,col=C::CODE message`, escaped as GitHub Actions requires."""
    message = f"{diagnostic.code} {diagnostic.message}"
    if diagnostic.hint:
        message += f" ({diagnostic.hint})"
    level = "notice" if diagnostic.severity == "info" else diagnostic.severity
    return (
        f"::{level} file={_escape_property(diagnostic.file)},"
        f"line={diagnostic.line},col={diagnostic.col}::{_escape_data(message)}"
    )


#: The SARIF level of each severity.
_SARIF_LEVELS = {"error": "error", "warning": "warning", "info": "note"}
_SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
#: The base of the relative file URIs: the directory the linter ran in.
SARIF_ROOT = "%SRCROOT%"


def _severity_of(code: str) -> str:
    return {"E": "error", "W": "warning"}.get(code[:1], "info")


def _sarif_rule(code: str, summary: str) -> dict[str, object]:
    return {
        "id": code,
        "shortDescription": {"text": summary},
        "help": {
            "text": f"{code} {summary}. The gateway's docs/diagnostics.md shows an example of it and the fix.",
        },
        "defaultConfiguration": {"level": _SARIF_LEVELS[_severity_of(code)]},
    }


def _artifact(file: str, root: Path) -> dict[str, str]:
    """A file as SARIF locates it: relative to `root` when inside it, else a file URI."""
    path = Path(os.path.abspath(root / file))
    try:
        relative = path.relative_to(os.path.abspath(root))
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": SARIF_ROOT}


def to_sarif(diagnostics: Sequence[Diagnostic], version: str, root: Path | None = None) -> str:
    """SARIF 2.1.0: one run of the tool `idgw` (`version`), every diagnostic code as a
    rule, each diagnostic as a result in its file (relative to `root`, default the working
    directory), line and column (in Unicode code points, as the diagnostics count them)."""
    base = Path.cwd() if root is None else root
    rule_index = {code: i for i, code in enumerate(CODES)}
    results = []
    for diagnostic in diagnostics:
        region: dict[str, int] = {"startLine": diagnostic.line, "startColumn": diagnostic.col}
        if diagnostic.end_col is not None and diagnostic.end_col > diagnostic.col:
            region["endColumn"] = diagnostic.end_col
        text = diagnostic.message + (f" (hint: {diagnostic.hint})" if diagnostic.hint else "")
        results.append({
            "ruleId": diagnostic.code,
            "ruleIndex": rule_index[diagnostic.code],
            "level": _SARIF_LEVELS[diagnostic.severity],
            "message": {"text": text},
            "locations": [
                {"physicalLocation": {"artifactLocation": _artifact(diagnostic.file, base), "region": region}}
            ],
        })
    run = {
        "tool": {
            "driver": {
                "name": "idgw",
                "fullName": "idgw policy lint (ID Gateway)",
                "version": version,
                "semanticVersion": version,
                "rules": [_sarif_rule(code, summary) for code, summary in CODES.items()],
            }
        },
        "originalUriBaseIds": {SARIF_ROOT: {"uri": Path(os.path.abspath(base)).as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    return json.dumps({"$schema": _SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


__all__ = [
    "LARGE_PURPOSE", "SARIF_ROOT", "failed", "github_annotation", "index_notes", "lint", "summary", "to_json",
    "to_sarif",
]
