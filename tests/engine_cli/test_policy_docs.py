"""The documentation and help texts promise things; check that they hold."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from dsl import CODES
from tests.engine_cli.policy_cli_helpers import ROOT, idgw

DIAGNOSTICS = (ROOT / "docs" / "diagnostics.md").read_text()
AUTHORING = (ROOT / "docs" / "policy-authoring.md").read_text()


def test_every_code_has_a_section_with_an_example_and_a_fix() -> None:
    sections = dict(re.findall(r"^### ([EWI]\d{3}) .*?\n(.*?)(?=^##)", DIAGNOSTICS + "\n##", re.S | re.M))
    assert sorted(sections) == sorted(CODES)
    for code, body in sections.items():
        assert "```" in body, f"{code} has no example"
        assert "**Fix:**" in body, f"{code} has no fix"


@pytest.mark.parametrize("command", ["lint", "test", "eval", "repl", "fmt", "schema"])
def test_help_of_every_command_shows_an_example(command: str) -> None:
    result = idgw("policy", command, "--help")
    assert result.exit_code == 0
    example = result.stdout.split("Example:\n", 1)[1]
    assert example.lstrip().startswith(("idgw policy", "$ idgw policy", "echo "))


def workflow() -> dict[str, object]:
    block = AUTHORING.split("```yaml\nname: policies\n", 1)[1].split("```", 1)[0]
    loaded: dict[str, object] = yaml.safe_load("name: policies\n" + block)
    return loaded


def test_the_ci_example_runs_the_commands_as_documented() -> None:
    steps = workflow()["jobs"]["check"]["steps"]  # type: ignore[index]
    commands = [step["run"] for step in steps if str(step.get("run", "")).startswith("idgw policy")]
    assert len(commands) == 5
    for command in commands:
        args = shlex.split(command.split(">")[0])
        result = idgw(*args[1:])
        assert result.exit_code == 0, f"{command}: {result.output}"


def test_the_editor_setting_names_the_file_the_schema_command_writes() -> None:
    section = AUTHORING.split("### Your editor checks as you type", 1)[1].split("\n## ", 1)[0]
    written = re.search(r"^\$ idgw policy schema > (\S+)$", section, re.M)
    setting = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    modeline = re.search(r"^# yaml-language-server: \$schema=\.\./(\S+)$", section, re.M)
    assert written and modeline
    assert setting == {"yaml.schemas": {f"./{written[1]}": "policies/**/*.yaml"}}
    assert modeline[1] == written[1]


def test_the_ci_example_uploads_the_lint_results_to_code_scanning() -> None:
    job = workflow()["jobs"]["check"]  # type: ignore[index]
    steps = job["steps"]
    [lint] = [step for step in steps if "--format sarif" in str(step.get("run", ""))]
    [upload] = [step for step in steps if str(step.get("uses", "")).startswith("github/codeql-action/upload-sarif@")]
    assert steps.index(upload) > steps.index(lint)
    written = lint["run"].split(">")[1].strip()
    assert upload["with"]["sarif_file"] == written
    assert lint["if"] == upload["if"] == "always()"  # the results go up when lint finds errors
    assert job["permissions"]["security-events"] == "write"
