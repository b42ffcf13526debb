"""Linter: every diagnostic of one or more policy directories, in one run.

The checks themselves are the load stages of `engine.build()` (syntax, names, types,
reachability, structure, cross-file duplicates, unused evidence and data); the linter
adds the validation of test files and the output formats of `idgw policy lint`:
text (`file:line:col: severity: CODE message`, source line, caret), JSON and GitHub
workflow commands.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from dsl import Diagnostic
from engine.loader import build
from engine.testing import check_test_files


def lint(paths: Iterable[str | Path]) -> list[Diagnostic]:
    """Every diagnostic (errors and warnings) of the given directories or files, sorted."""
    diagnostics: list[Diagnostic] = []
    seen: set[Diagnostic] = set()
    for path in paths:
        result = build(path)
        found = list(result.diagnostics)
        if result.policy_set is not None:
            found += check_test_files(result.policy_set)
        for diagnostic in found:
            if diagnostic not in seen:  # the same file reached through two paths
                seen.add(diagnostic)
                diagnostics.append(diagnostic)
    return sorted(diagnostics, key=lambda d: d.sort_key)


def failed(diagnostics: Sequence[Diagnostic], strict: bool = False) -> bool:
    """Errors fail a lint; with `strict`, warnings do too."""
    return any(d.severity == "error" or strict for d in diagnostics)


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    if not diagnostics:
        return "no problems found"
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"


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
    return (
        f"::{diagnostic.severity} file={_escape_property(diagnostic.file)},"
        f"line={diagnostic.line},col={diagnostic.col}::{_escape_data(message)}"
    )


__all__ = ["failed", "github_annotation", "lint", "summary", "to_json"]
