"""`idgw policy repl`: piped stdin through the CLI runner, and a real terminal via pexpect."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.engine_cli.policy_cli_helpers import IDGW, ROOT, fixture, idgw

SCREENING = fixture("test_errors")


def repl(*lines: str, directory: str = SCREENING) -> list[str]:
    result = idgw("policy", "repl", "--dir", directory, input="\n".join(lines) + "\n")
    assert result.exit_code == 0
    return result.stdout.splitlines()


def test_expressions_print_their_value_or_undefined() -> None:
    out = repl(":set is_pep true", "is_pep AND NOT false", "context.amount", "1 + 2 * 3", '"a" + "b"', "credentials")
    assert out[1:] == ["is_pep = true", "true", "undefined", "7", '"ab"', "undefined"]


def test_a_bad_line_shows_the_caret_and_the_session_goes_on() -> None:
    out = repl("is_pep AND )", "is_peep", "len(1, 2)", "40 + 2")
    assert out[1:4] == [
        "<repl>:1:12: error: E101 unexpected ')', expected an operand",
        "    is_pep AND )",
        "               ^",
    ]
    assert "<repl>:1:1: error: E102 unknown name `is_peep`" in out
    assert "    hint: did you mean `is_pep`?" in out
    assert "<repl>:1:1: error: E104 len() takes 1 argument, got 2" in out
    assert out[-1] == "42"


def test_multi_line_input_continues_while_the_expression_is_open() -> None:
    out = repl("(1 +", "  2) *", "3 == 9")
    assert out[1:] == ["true"]


def test_facts_as_json_decide_and_explain() -> None:
    out = repl(
        ':facts {"sanctions_listed": false, "is_pep": true, "context": {"amount": 5}}',
        ":decide screening",
        ":explain",
    )
    assert out[1] == "3 fact(s) set"
    assert out[2] == (
        "screening: pass_with_conditions (politically_exposed) conditions: enhanced_due_diligence  rule 2, line 13"
    )
    start = out.index("{")
    tables = "\n".join(out[3:start])
    assert " sanctions_listed │ -        │ false  │ ok " in tables
    assert " 1 │ 10   │ sanctions_listed │ no match " in tables
    assert " 2 │ 13   │ is_pep           │ match -> pass_with_conditions │ is_pep=true " in tables
    explained = json.loads("\n".join(out[start:]))
    assert explained["reason"] == "politically_exposed"
    assert [e["kind"] for e in explained["explanation"]] == ["evidence", "evidence", "rule", "rule"]


def test_decide_shows_missing_evidence() -> None:
    out = repl(":set is_pep false", ":decide screening")
    assert out[2] == "screening: fail (missing_evidence)"
    assert any("sanctions_listed" in line and "missing" in line for line in out[3:])


def test_set_nested_unset_and_clear() -> None:
    out = repl(
        ":set context.amount 12000", "context.amount > 10000", ":unset context.amount", "context.amount",
        ':set context.id "AB12"', ":clear", "context.id",
    )
    assert out[1:] == ["context.amount = 12000", "true", "undefined", 'context.id = "AB12"', "0 fact(s) set", "undefined"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (":set is_pep yes", "error: invalid value: Expecting value (strings need double quotes: \"AB123\")"),
        (":set", "error: usage: :set NAME VALUE   (VALUE is JSON, e.g. :set context.amount 12000)"),
        (":facts [1]", "error: facts must be a JSON object"),
        (":facts {oops}", "error: invalid JSON: Expecting property name enclosed in double quotes at column 2"),
        (":decide screenin", "error: unknown purpose `screenin`; did you mean screening?"),
        (":explain", "error: no decision yet: use :decide PURPOSE first"),
        (":purpose", "error: unknown command :purpose; did you mean :purposes?"),
        (":unset nothing", "error: `nothing` is not set"),
    ],
)
def test_command_errors_are_one_line_and_the_loop_continues(line: str, message: str) -> None:
    out = repl(line, "1 == 1")
    assert out[1:] == [message, "true"]


def test_purposes_facts_and_help() -> None:
    out = "\n".join(repl(":purposes", ":set is_pep true", ":facts", ":help"))
    assert "screening" in out and "Clear of sanctions" in out
    assert "list[string]" in out  # credentials, from the fact catalogue
    assert ":decide PURPOSE" in out


def test_quit_stops_reading() -> None:
    out = repl("1", ":quit", "2")
    assert out[1:] == ["1"]


def test_start_with_a_broken_directory_still_evaluates_expressions() -> None:
    out = repl("1 < 2", directory=fixture("duplicate_purpose"))
    assert any("E204" in line for line in out)
    assert out[-1] == "true"


def test_in_a_terminal_with_prompt_toolkit(tmp_path: Path, copy_fixture: Callable[[str], Path]) -> None:
    directory = copy_fixture("test_errors")
    policy = directory / "policy.yaml"
    good = policy.read_text()
    env = {**os.environ, "HOME": str(tmp_path), "NO_COLOR": "1", "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("IDGW_HISTORY_FILE", None)
    child = pexpect.spawn(
        str(IDGW), ["policy", "repl", "--dir", str(directory)], cwd=str(ROOT), env=env, encoding="utf-8",
        timeout=20, dimensions=(40, 160),
    )

    def run(line: str, *expected: str) -> None:
        child.sendline(line)
        for pattern in expected:
            child.expect(pattern)
        child.expect("idgw>")

    try:
        child.expect("purposes screening")
        child.expect("idgw>")
        run(':facts {"sanctions_listed": false, "is_pep": false}', "2 fact\\(s\\) set")
        run('"ab" + "cd"', '"abcd"')
        child.send("sanctions_li\t")  # Tab completes fact names...
        child.expect("sanctions_listed")
        run("", "false")
        child.send(":deci\t")  # ...commands...
        child.expect(":decide")
        child.send(" scr\t")  # ...and purposes
        run("", "screening: pass \\(not_listed\\)")
        run("is_pep AND )", "E101 unexpected '\\)'", "\\^")
        child.sendline("(is_pep")  # an open bracket: Enter continues the input
        run("OR true)", "true")
        run(":decide screening", "screening: pass \\(not_listed\\)")
        policy.write_text(good.replace("then: fail", "then: deny"))
        run(":reload", "E201 invalid outcome `deny`", "keeping the previous policy set")
        run(":decide screening", "screening: pass \\(not_listed\\)")
        policy.write_text(good.replace("reason: not_listed", "reason: all_clear"))
        run(":reload", "loaded ")
        run(":decide screening", "screening: pass \\(all_clear\\)")
        child.sendline(":quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = (tmp_path / ".idgw_history").read_text()
    assert '+"ab" + "cd"' in history
    assert "+(is_pep\n+OR true)" in history
