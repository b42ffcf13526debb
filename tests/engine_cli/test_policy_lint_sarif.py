"""`idgw policy lint --format sarif`: SARIF 2.1.0 that the official schema accepts, one
result per diagnostic, located as code scanning needs it."""

from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from dsl import CODES, Diagnostic
from engine.lint import to_sarif
from tests.engine_cli.policy_cli_helpers import ROOT, fixture, idgw

SARIF_SCHEMA = ROOT / "tests" / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"

# The URI formats the SARIF schema names (jsonschema checks them only with extra packages);
# the log has no date-time.
_URI_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
FORMATS = FormatChecker([])


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(
        _URI_CHARACTERS.match(value) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value)
    )


@FORMATS.checks("uri-reference")
def _is_uri_reference(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI_CHARACTERS.match(value))


def test_the_schema_is_the_official_one_unchanged() -> None:
    readme = (SARIF_SCHEMA.parent / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(SARIF_SCHEMA.read_bytes()).hexdigest()
    assert f"sha256: `{digest}`" in readme
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    assert schema["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    Draft4Validator.check_schema(schema)


def valid_sarif(text: str) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(text)
    validator = Draft4Validator(json.loads(SARIF_SCHEMA.read_text(encoding="utf-8")), format_checker=FORMATS)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []
    return log


def sarif_lint(*paths: str) -> tuple[int, dict[str, Any]]:
    result = idgw("policy", "lint", "--format", "sarif", *paths)
    return result.exit_code, valid_sarif(result.stdout)


def where(result: dict[str, Any]) -> tuple[str, str, str, int, int, int | None]:
    location = result["locations"][0]["physicalLocation"]
    region = location["region"]
    return (
        location["artifactLocation"]["uri"], result["ruleId"], result["level"],
        region["startLine"], region["startColumn"], region.get("endColumn"),
    )


def test_every_diagnostic_is_a_result_where_json_puts_it() -> None:
    paths = [fixture(name) for name in ("errors", "structure", "warnings", "test_errors", "duplicate_purpose")]
    code, log = sarif_lint(*paths)
    expected = json.loads(idgw("policy", "lint", "--format", "json", *paths).stdout)
    [run] = log["runs"]
    assert code == 1
    assert [where(r)[:5] for r in run["results"]] == [
        (d["file"], d["code"], {"info": "note"}.get(d["severity"], d["severity"]), d["line"], d["col"])
        for d in expected
    ]
    assert {r["level"] for r in run["results"]} == {"error", "warning"}
    for result, diagnostic in zip(run["results"], expected, strict=True):
        hint = f" (hint: {diagnostic['hint']})" if diagnostic["hint"] else ""
        assert result["message"]["text"] == diagnostic["message"] + hint
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": ROOT.as_uri() + "/"}}


def test_regions_end_where_the_diagnostic_does() -> None:
    _, log = sarif_lint(fixture("errors"))
    found = {where(r)[1]: where(r) for r in log["runs"][0]["results"]}
    uri = "tests/fixtures/broken/errors/policy.yaml"
    assert found["E102"] == (uri, "E102", "error", 12, 23, 23 + len("is_peep"))
    assert found["E202"] == (uri, "E202", "error", 43, 9, None)  # a whole rule: no end known


def test_the_tool_names_every_code_with_its_help() -> None:
    _, log = sarif_lint(fixture("warnings"))
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("idgw", version("id-gateway"))
    assert [rule["id"] for rule in driver["rules"]] == list(CODES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] == CODES[rule["id"]]
        assert rule["help"]["text"].startswith(f"{rule['id']} {CODES[rule['id']]}.")
        level = {"E": "error", "W": "warning", "I": "note"}[rule["id"][0]]
        assert rule["defaultConfiguration"]["level"] == level
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert run["columnKind"] == "unicodeCodePoints"


def test_notes_on_large_purposes_are_notes(tmp_path: Path) -> None:
    lines = ["purposes:", "  big:", "    context:", "      n: {type: number}", "    rules:"]
    for i in range(60):
        lines += [f"      - if: context.n + {i} > 100", "        then: pass", f"        reason: r{i}"]
    (tmp_path / "big.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, log = sarif_lint(str(tmp_path))
    levels = {(r["ruleId"], r["level"]) for r in log["runs"][0]["results"]}
    assert code == 0
    assert levels == {("I501", "note"), ("I502", "note")}
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": (tmp_path / "big.yaml").as_uri()}  # outside the working directory


def test_a_clean_directory_is_a_run_without_results() -> None:
    code, log = sarif_lint("policies")
    assert code == 0
    assert log["runs"][0]["results"] == []


@pytest.mark.parametrize(
    ("file", "uri"),
    [
        ("policies/age.yaml", "policies/age.yaml"),
        ("./my policies/ä#1.yaml", "my%20policies/%C3%A4%231.yaml"),
        ("policies/../other/x.yaml", "other/x.yaml"),
    ],
)
def test_uris_are_relative_to_the_working_directory_and_escaped(tmp_path: Path, file: str, uri: str) -> None:
    diagnostic = Diagnostic(code="E101", message="m", file=file, line=3, col=5, end_col=5)
    log = valid_sarif(to_sarif([diagnostic], "1.0.0", root=tmp_path))
    location = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": uri, "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 3, "startColumn": 5}  # an empty span has no end
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"
