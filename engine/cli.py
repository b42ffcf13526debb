"""`idgw policy ...`: the policy author commands (lint, test, eval, repl, fmt, schema, bundle).

Thin click commands over the engine's library API: `engine.lint`, `engine.testing`,
`engine.fmt`, `engine.repl`, `engine.policy_schema`, `engine.bundle`, `engine.build`.
Exit codes are the same everywhere: 0 success, 1 problems found (errors, failing tests,
files to reformat), 2 usage errors (bad options, unreadable input, unknown purpose).
Colour only on a terminal (and never with NO_COLOR set). Heavy modules are imported
inside the commands so that `idgw` starts fast.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn
from xml.etree import ElementTree

import click

from dsl import Diagnostic, Fact
from engine.clock import utc_now, utc_text
from engine.loader import build, is_test_file
from engine.policyset import Decision

if TYPE_CHECKING:
    from engine.bundle import Bundle, BundleError, Signature
    from engine.testing import Refused

DEFAULT_DIR = "policies"
_DIR_ENV = "IDGW_POLICY_DIR"


def _color(stream: IO[Any]) -> bool:
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def _fail(message: str, code: int = 2) -> NoReturn:
    """A one-line error on stderr and an exit code (2: the invocation was wrong)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _paths(paths: Sequence[str]) -> list[str]:
    if paths:
        return list(paths)
    default = os.environ.get(_DIR_ENV) or DEFAULT_DIR
    if not Path(default).exists():
        raise click.UsageError(f"no PATH given and the default policy directory {default!r} does not exist")
    return [default]


def _echo_diagnostics(diagnostics: Sequence[Diagnostic], err: bool = False) -> None:
    """Each diagnostic with its source line and caret, a blank line after each."""
    stream = sys.stderr if err else sys.stdout
    color = _color(stream)
    for diagnostic in diagnostics:
        click.echo(diagnostic.render(color) + "\n", err=err, color=color)


_paths_argument = click.argument("paths", nargs=-1, type=click.Path(exists=True))
_dir_option = click.option(
    "--dir", "directory", envvar=_DIR_ENV, default=DEFAULT_DIR, show_default=True,
    type=click.Path(exists=True), help=f"Policy directory (or ${_DIR_ENV}).",
)


def echo_refusal(refused: Refused | BundleError) -> None:
    """Why a directory was refused, as `idgw policy lint` and `idgw policy test` show it."""
    if refused.diagnostics:
        from engine.lint import summary

        _echo_diagnostics(refused.diagnostics)
        click.echo(summary(refused.diagnostics))
    if refused.report is not None:
        _test_text(refused.report, None, False, False)
        click.echo(f"{refused.report.passed} passed, {refused.report.failed} failed")


def _catalogue() -> dict[str, Fact]:
    """The facts the gateway provides, as the `idgw` command that runs these commands
    set them (`ctx.obj["catalogue"]`); none when the group runs on its own."""
    context = click.get_current_context(silent=True)
    while context is not None:
        if isinstance(context.obj, dict) and "catalogue" in context.obj:
            catalogue: dict[str, Fact] = context.obj["catalogue"]
            return catalogue
        context = context.parent
    return {}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def policy() -> None:
    """Work with policy files: lint, test, eval, repl, fmt, schema, bundle, replay, studio.

    \b
    Example:
      idgw policy lint policies/
      idgw policy test --coverage policies/
    """


# -- lint ------------------------------------------------------------------------------
@policy.command()
@_paths_argument
@click.option(
    "--format", "output", type=click.Choice(["text", "json", "github", "sarif"]), default="text",
    show_default=True,
    help="text for people, json for tools, github for GitHub Actions annotations, sarif for code scanning.",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def lint(paths: tuple[str, ...], output: str, strict: bool) -> None:
    """Check policy files (and their test files) and report every problem at once.

    Each problem is `file:line:col: severity: CODE message` with the source line and a
    caret; codes are documented in docs/diagnostics.md. Exit 0 when clean, 1 on errors
    (or on warnings with --strict), 2 on a usage error. PATH defaults to
    $IDGW_POLICY_DIR or ./policies.

    \b
    Example:
      idgw policy lint policies/
      idgw policy lint --strict --format github policies/
      idgw policy lint --format sarif policies/ > policy-lint.sarif
    """
    from engine import lint as linter

    diagnostics = linter.lint(_paths(paths), catalogue=_catalogue())
    if output == "json":
        click.echo(linter.to_json(diagnostics))
    elif output == "sarif":
        from importlib.metadata import version

        click.echo(linter.to_sarif(diagnostics, version("id-gateway")))
    elif output == "github":
        for diagnostic in diagnostics:
            click.echo(linter.github_annotation(diagnostic))
    else:
        _echo_diagnostics(diagnostics)
        click.echo(linter.summary(diagnostics))
    sys.exit(1 if linter.failed(diagnostics, strict) else 0)


# -- test ------------------------------------------------------------------------------
@policy.command(name="test")
@_paths_argument
@click.option(
    "--format", "output", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True,
    help="text for people, json for tools, junit for CI test reports.",
)
@click.option("-k", "pattern", metavar="PATTERN", help="Only cases whose name or purpose contains PATTERN.")
@click.option("--coverage", is_flag=True, help="Show, per purpose, the rules no case reached.")
@click.option(
    "--fail-under", type=click.FloatRange(0, 100), metavar="PCT", help="Fail when rule coverage is below PCT."
)
@click.option("-v", "--verbose", is_flag=True, help="List every case, not only failures.")
def test_command(
    paths: tuple[str, ...], output: str, pattern: str | None, coverage: bool, fail_under: float | None,
    verbose: bool,
) -> None:
    """Run the policy test cases (*_test.yaml and tests/*.yaml).

    Failures show expected vs actual and the explanation of the decision; the last line
    is `N passed, N failed`. A test naming an unknown purpose or fact is an error.
    A rule is covered when some case was decided by it. Exit 1 on any failure or error
    (or coverage under --fail-under).

    \b
    Example:
      idgw policy test policies/
      idgw policy test -k sanctioned --coverage --fail-under 90 policies/
      idgw policy test --format junit policies/ > policy-tests.xml
    """
    from engine.testing import TestReport, run_tests

    report = TestReport()
    for path in _paths(paths):
        target, files = Path(path), None
        if target.is_file() and is_test_file(Path(target.parent.name, target.name)):
            # One test file: build the policy directory it belongs to, run only that file.
            files = [path]
            target = target.parent.parent if target.parent.name == "tests" else target.parent
        result = build(target, catalogue=_catalogue())
        if result.policy_set is None:
            report.errors = sorted([*report.errors, *result.errors], key=lambda d: d.sort_key)
            continue
        report.merge(run_tests(result.policy_set, files=files, pattern=pattern))
    under = fail_under is not None and report.coverage_percent < fail_under
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif output == "junit":
        click.echo(_junit(report))
    else:
        _test_text(report, pattern, coverage or under, verbose)
        if under:
            click.echo(f"coverage {report.coverage_percent:.1f}% is below --fail-under {fail_under:g}%")
        click.echo(f"{report.passed} passed, {report.failed} failed")
    sys.exit(0 if report.ok and not under else 1)


def _test_text(report: Any, pattern: str | None, coverage: bool, verbose: bool) -> None:
    from engine.testing import explanation_lines

    color = _color(sys.stdout)
    red, green, reset = ("\x1b[31m", "\x1b[32m", "\x1b[0m") if color else ("", "", "")
    for result in report.results:
        where = f"{result.file}:{result.line}"
        if result.passed:
            if verbose:
                click.echo(f"{green}PASSED{reset} {where} {result.purpose}: {result.name}", color=color)
            continue
        actual = result.actual
        click.echo(f"{red}FAILED{reset} {where} {result.purpose}: {result.name}", color=color)
        for mismatch in result.mismatches:
            click.echo(f"  {mismatch}")
        click.echo(f"  expected: {json.dumps(result.expected.to_dict())}")
        got = {"status": actual.status, "reason": actual.reason, "conditions": list(actual.conditions)}
        decided = f" (rule {actual.rule + 1}, line {actual.line})" if actual.rule is not None else ""
        click.echo(f"  actual:   {json.dumps(got)}{decided}")
        lines = explanation_lines(actual)
        if lines:
            click.echo("  explanation:")
            for line in lines:
                click.echo(f"    {line}")
        click.echo("")
    if report.errors:
        _echo_diagnostics(report.errors)
        click.echo(f"{len(report.errors)} error{'s' if len(report.errors) != 1 else ''} in test files")
    if not report.results and not report.errors:
        reason = f"no test case matches -k {pattern!r}" if pattern else "no test cases found"
        click.echo(reason)
    if coverage:
        click.echo("coverage (rules that decided at least one case):")
        for name, item in sorted(report.coverage.items()):
            missed = ", ".join(f"line {r.line}" for r in item.missed)
            detail = f"  not reached: {missed}" if missed else ""
            click.echo(f"  {name:<32} {item.percent:5.1f}%  {len(item.reached)}/{len(item.rules)} rules{detail}")
        click.echo(f"  {'total':<32} {report.coverage_percent:5.1f}%")


def _junit(report: Any) -> str:
    suites = ElementTree.Element(
        "testsuites", tests=str(len(report.results) + len(report.errors)),
        failures=str(report.failed), errors=str(len(report.errors)),
    )
    by_file: dict[str, list[Any]] = {}
    for result in report.results:
        by_file.setdefault(result.file, []).append(result)
    for diagnostic in report.errors:
        by_file.setdefault(diagnostic.file, [])
    for file, results in sorted(by_file.items()):
        errors = [d for d in report.errors if d.file == file]
        suite = ElementTree.SubElement(
            suites, "testsuite", name=file, tests=str(len(results) + len(errors)),
            failures=str(sum(not r.passed for r in results)), errors=str(len(errors)),
        )
        for result in results:
            case = ElementTree.SubElement(
                suite, "testcase", name=result.name, classname=result.purpose, file=file, line=str(result.line)
            )
            if not result.passed:
                failure = ElementTree.SubElement(case, "failure", message="; ".join(result.mismatches))
                from engine.testing import explanation_lines

                failure.text = "\n".join(explanation_lines(result.actual))
        for diagnostic in errors:
            case = ElementTree.SubElement(
                suite, "testcase", name=f"{diagnostic.code} line {diagnostic.line}", classname=file,
                file=file, line=str(diagnostic.line),
            )
            error = ElementTree.SubElement(case, "error", message=f"{diagnostic.code} {diagnostic.message}")
            error.text = diagnostic.render()
    ElementTree.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode")


# -- eval ------------------------------------------------------------------------------
@policy.command(name="eval")
@click.option("--purpose", "-p", required=True, help="The purpose to decide.")
@click.option(
    "--input", "-i", "input_file", type=click.File("r"), default=None,
    help="JSON facts (a file, or - for stdin; default: stdin when piped).",
)
@click.option("--explain", is_flag=True, help="Include the explanation.")
@_dir_option
def eval_command(purpose: str, input_file: IO[str] | None, explain: bool, directory: str) -> None:
    """Decide one purpose and print the decision as JSON.

    Facts sit at the top level, the request context under `context` (and `subject`,
    `consent` maps). Bad JSON or an unknown purpose is a one-line error with exit 2.

    \b
    Example:
      echo '{"sanctions_listed": false, "is_pep": true}' \\
        | idgw policy eval --purpose sanctions_screening --explain --dir policies
    """
    if input_file is None and not sys.stdin.isatty():
        input_file = sys.stdin
    text = input_file.read() if input_file is not None else ""
    try:
        facts = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        _fail(f"invalid JSON input: {err.msg} (line {err.lineno}, column {err.colno})")
    if not isinstance(facts, dict):
        _fail("the input must be a JSON object of facts")
    result = build(directory, catalogue=_catalogue())
    if result.policy_set is None:
        _echo_diagnostics(result.errors, err=True)
        _fail(f"the policy set in {directory} has {len(result.errors)} error(s)", code=1)
    policy_set = result.policy_set
    if purpose not in policy_set.purposes:
        known = ", ".join(sorted(policy_set.purposes)) or "none"
        _fail(f"unknown purpose {purpose!r}; known purposes: {known}")
    decision = policy_set.decide(purpose, facts, explain=explain)
    declared = policy_set.purposes[purpose].facts
    evidence = {name: facts[name] for name in declared if name in facts}
    click.echo(json.dumps(_evaluation(decision, evidence), indent=2, default=str))


def _evaluation(decision: Decision, evidence: dict[str, object]) -> dict[str, object]:
    """The decision as `idgw policy eval` prints it: the fields of the gateway's decision
    answer, with an id and the time of this evaluation."""
    own = decision.as_json()
    out: dict[str, object] = {"decision_id": "dec_" + secrets.token_urlsafe(16)}
    out.update((key, own[key]) for key in ("purpose", "status", "reason", "conditions"))
    out["evidence"] = evidence
    out["policy_revision"] = own["policy_revision"]
    out["evaluated_at"] = utc_text(utc_now())
    if "explanation" in own:
        out["explanation"] = own["explanation"]
    return out


# -- repl ------------------------------------------------------------------------------
@policy.command()
@_dir_option
def repl(directory: str) -> None:
    """Interactive session: set facts, evaluate expressions, decide and explain.

    Any line that is not a :command is an expression, evaluated against the current
    facts. History is kept in ~/.idgw_history on a terminal.

    \b
    Example:
      $ idgw policy repl --dir policies
      idgw> :set is_over_18 true
      idgw> is_over_18 AND NOT is_pep
      idgw> :facts {"sanctions_listed": false, "is_pep": true}
      idgw> :decide sanctions_screening
    """
    from engine.repl import run

    run(directory, catalogue=_catalogue())


# -- fmt -------------------------------------------------------------------------------
@policy.command()
@_paths_argument
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file would be reformatted.")
@click.option("--diff", "show_diff", is_flag=True, help="Change nothing; print what would change.")
def fmt(paths: tuple[str, ...], check: bool, show_diff: bool) -> None:
    """Rewrite policy and test files in the canonical layout, keeping comments.

    Canonical key order (description, consent, context, evidence, rules; if, then,
    else, reason, conditions), two-space indentation, normalised expression spacing.
    Formatting twice changes nothing.

    \b
    Example:
      idgw policy fmt policies/
      idgw policy fmt --check policies/     # in CI
    """
    import difflib

    from engine.fmt import format_files

    results, problems = format_files(_paths(paths))
    _echo_diagnostics(problems, err=True)
    changed = [r for r in results if r.changed]
    for item in changed:
        if show_diff:
            diff = difflib.unified_diff(
                item.original.splitlines(keepends=True), item.formatted.splitlines(keepends=True),
                fromfile=str(item.path), tofile=str(item.path),
            )
            click.echo("".join(diff), nl=False)
        elif check:
            click.echo(f"would reformat {item.path}")
        else:
            item.path.write_text(item.formatted, encoding="utf-8")
            click.echo(f"reformatted {item.path}")
    unchanged = len(results) - len(changed)
    verb = "would be reformatted" if check or show_diff else "reformatted"
    click.echo(f"{len(changed)} file{'s' if len(changed) != 1 else ''} {verb}, {unchanged} unchanged")
    sys.exit(1 if problems or ((check or show_diff) and changed) else 0)


# -- schema ----------------------------------------------------------------------------
@policy.command()
def schema() -> None:
    """Print the JSON Schema of policy files and test files, for editors.

    One document (JSON Schema 2020-12) for both: a file with `cases` or `purpose` at
    the top is checked as a test file, any other as a policy file. It checks what the
    loader checks about keys, types, outcomes and required values, with help on hover;
    the rule language and the checks across files stay with `idgw policy lint`.
    Expected values of evidence are typed by the facts this gateway provides.

    \b
    Example:
      idgw policy schema > policy.schema.json
      # VS Code, settings.json: "yaml.schemas": {"./policy.schema.json": "policies/**/*.yaml"}
    """
    from engine.policy_schema import policy_schema

    click.echo(json.dumps(policy_schema(_catalogue()), indent=2))


# -- bundle ----------------------------------------------------------------------------
@policy.group()
def bundle() -> None:
    """Signed policy bundles: one archive of a tested policy directory, for the gateways.

    \b
    Example:
      idgw policy bundle build policies/ -o bundle.tar.gz --signing-key bundle-key.pem
      idgw policy bundle verify bundle.tar.gz --public-key bundle-key.pub
      idgw policy bundle inspect bundle.tar.gz
    """


def _read_key(path: str | None, private: bool) -> bytes | None:
    """The PEM of a --signing-key (`private`) or --public-key file; exit 2 when it is
    not a key bundles can use."""
    from engine.bundle import BundleError, public_key, signing_key

    if path is None:
        return None
    try:
        pem = Path(path).read_bytes()
        signing_key(pem) if private else public_key(pem)
    except OSError as err:
        _fail(f"cannot read {path}: {err.strerror}")
    except BundleError as err:
        _fail(f"{path}: {err}")
    return pem


def _open(path: str, public_key_pem: bytes | None) -> Bundle:
    """The checked bundle in `path`; exit 1 with the reason when it fails a check."""
    from engine.bundle import BundleError, open_bundle

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        _fail(f"cannot read {path}: {err.strerror}")
    try:
        return open_bundle(data, public_key_pem, require_signature=public_key_pem is not None)
    except BundleError as err:
        _fail(f"{path}: {err}", code=1)


def _signed_by(signature: Signature | None) -> str:
    if signature is None:
        return "unsigned"
    return f"signed with {signature.algorithm} by key {signature.key_id or '(no key id)'}"


@bundle.command(name="build")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The archive to write.")
@click.option(
    "--signing-key", type=click.Path(exists=True, dir_okay=False), metavar="KEY.pem",
    help="PEM private key, EC P-256 (ES256) or Ed25519 (EdDSA), to sign the manifest with.",
)
def bundle_build(directory: str, output: str, signing_key: str | None) -> None:
    """Pack a policy directory into a deterministic .tar.gz with a manifest.

    The directory must load without errors and pass its own tests; otherwise the
    problems are shown as `idgw policy lint` and `idgw policy test` show them and
    nothing is written (exit 1). The same files (and Ed25519 key) give the same bytes.

    \b
    Example:
      idgw policy bundle build policies/ -o bundle.tar.gz --signing-key bundle-key.pem
    """
    from engine.bundle import BundleError, build_bundle

    try:
        data = build_bundle(directory, _read_key(signing_key, private=True), _catalogue())
    except BundleError as err:
        echo_refusal(err)
        _fail(str(err), code=1)
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)  # a server reading `output` sees the old bundle or the new one
    opened = _open(output, None)
    click.echo(
        f"built {output}: revision {opened.revision}, {len(opened.files)} files, "
        f"{len(data):,} bytes, {_signed_by(opened.signature)}"
    )


@bundle.command(name="verify")
@click.argument("path", metavar="BUNDLE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--public-key", required=True, type=click.Path(exists=True, dir_okay=False), metavar="KEY.pub",
    help="PEM public key the manifest must be signed with.",
)
def bundle_verify(path: str, public_key: str) -> None:
    """Check a bundle: signature by this key, every file's size and hash, the revision.

    Prints one line: OK and the revision (exit 0), or the reason it fails (exit 1).

    \b
    Example:
      idgw policy bundle verify bundle.tar.gz --public-key bundle-key.pub
    """
    opened = _open(path, _read_key(public_key, private=False))
    click.echo(f"OK {path}: revision {opened.revision}, {len(opened.files)} files, {_signed_by(opened.signature)}")


@bundle.command(name="inspect")
@click.argument("path", metavar="BUNDLE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for tools.",
)
def bundle_inspect(path: str, output: str) -> None:
    """Show a bundle's manifest: revision, files with roles and sizes, who signed it.

    The archive and its hashes are checked; the signature is not (that needs the public
    key: `idgw policy bundle verify`). A bundle that fails a check exits 1 with the reason.

    \b
    Example:
      idgw policy bundle inspect bundle.tar.gz
      idgw policy bundle inspect --format json bundle.tar.gz
    """
    opened = _open(path, None)
    manifest, signature = opened.manifest, opened.signature
    if output == "json":
        shown = {**manifest.to_dict(), "signature": signature.to_dict() if signature is not None else None}
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(f"bundle    {path}")
    click.echo(f"format    {manifest.format}")
    click.echo(f"revision  {manifest.revision}")
    if signature is None:
        click.echo("signature none")
    else:
        click.echo(f"signature {signature.algorithm}, key id {signature.key_id or '(none)'} (not verified here)")
    click.echo(f"files     {len(manifest.files)}, {sum(f.size for f in manifest.files):,} bytes")
    width = max((len(f"{f.size:,}") for f in manifest.files), default=1)
    for item in manifest.files:
        click.echo(f"  {item.role:<6}  {item.size:>{width},}  {item.path}")


__all__ = ["policy"]
