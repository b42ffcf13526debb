"""`idgw policy repl`: evaluate expressions and decisions interactively.

Sits on top of the public pipeline only: `engine.build()` for the policy set,
`dsl.parse/check/compile_expression` for expressions, `PolicySet.decide(explain=True)`
for decisions. On a terminal the input comes from prompt_toolkit (history in
`~/.idgw_history`, completion of facts, purposes, functions and commands, multi-line
input while brackets are open or a line ends with an operator); with piped stdin it
reads plain lines, so scripts and tests drive the same loop. A bad line never ends
the session: its diagnostic is printed with a caret and the loop continues.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import dsl
from dsl import (
    FUNCTIONS,
    QUANTIFIERS,
    ROOTS,
    SUBJECT_FIELDS,
    UNDEFINED,
    Diagnostic,
    FactBinding,
    Scope,
)
from dsl.types import ANY
from engine.loader import build
from engine.policyset import Decision, PolicySet, jsonable

PROMPT = "idgw> "
CONTINUATION = "...   "
HISTORY_FILE = "~/.idgw_history"

HELP = """\
Type an expression to see its value (or `undefined`), e.g.  is_over_18 AND NOT is_pep
Commands:
  :set NAME VALUE     set a fact; VALUE is JSON (`:set context.amount 12000`)
  :unset NAME         remove a fact
  :facts              list known facts and their current values
  :facts {JSON}       replace all facts, e.g. :facts {"is_pep": true, "context": {"amount": 5}}
  :clear              remove all facts
  :decide PURPOSE     decide a purpose with the current facts and explain it
  :explain            the last decision as JSON, with its explanation
  :purposes           list the purposes of the policy set
  :reload             reload the policy directory
  :help               this help
  :quit               leave (or Ctrl-D)
An expression continues on the next line while brackets are open or it ends with an operator."""

COMMANDS = (":set", ":unset", ":facts", ":clear", ":decide", ":explain", ":purposes", ":reload", ":help", ":quit")
_KEYWORDS = ("AND", "OR", "NOT", "in", "not in", "true", "false", "null")
_STATUS_STYLE = {"pass": "bold green", "pass_with_conditions": "bold yellow", "fail": "bold red"}


def incomplete(text: str) -> bool:
    """True while an input needs another line: the expression (or a command's JSON
    argument) stops short, as with open brackets or a trailing operator."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return False
    if stripped.startswith(":"):
        start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
        if start < 0:
            return False
        try:
            json.loads(stripped[start:])
        except json.JSONDecodeError as err:
            return err.pos >= len(stripped) - start
        return False
    try:
        dsl.parse(stripped)
    except dsl.ParseFailure as failure:
        return failure.diagnostic.message.startswith("unexpected end of expression")
    return False


def parse_value(text: str) -> Any:
    """A fact value: JSON, with the rule language's any-case true/false/null accepted."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[lowered]
    return json.loads(text)


def format_value(value: object) -> str:
    if value is UNDEFINED:
        return "undefined"
    return json.dumps(jsonable(value), default=str)


def _set_path(facts: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target = facts
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[parts[-1]] = value


def _unset_path(facts: dict[str, Any], path: str) -> bool:
    parts = path.split(".")
    target: Any = facts
    for part in parts[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict) and parts[-1] in target:
        del target[parts[-1]]
        return True
    return False


@dataclass(slots=True)
class Session:
    """The state of one REPL session and the handling of one input at a time."""

    directory: str
    console: Console
    color: bool = False
    policy_set: PolicySet | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    last: Decision | None = None
    #: The facts the gateway provides, which the policies are checked against.
    catalogue: Mapping[str, dsl.Fact] = field(default_factory=dict)

    # -- policy set ------------------------------------------------------------------
    def reload(self) -> None:
        result = build(self.directory, catalogue=self.catalogue)
        for diagnostic in result.diagnostics:
            self.show_diagnostic(diagnostic)
        if result.policy_set is None:
            kept = "keeping the previous policy set" if self.policy_set else "no policy set loaded"
            self.console.print(f"[red]{len(result.errors)} error(s) in {escape(self.directory)}; {kept}[/red]")
            return
        self.policy_set = result.policy_set
        names = ", ".join(sorted(self.policy_set.purposes)) or "none"
        self.console.print(
            f"loaded {escape(self.directory)} ({escape(self.policy_set.revision[:19])}): purposes {escape(names)}"
        )

    def show_diagnostic(self, diagnostic: Diagnostic) -> None:
        self.console.print(diagnostic.render(self.color), markup=False, highlight=False)

    def error(self, message: str) -> None:
        self.console.print(f"[red]error:[/red] {escape(message)}")

    # -- names for the checker and the completer ---------------------------------------
    def known_facts(self) -> dict[str, dsl.Type]:
        names: dict[str, dsl.Type] = {}
        if self.policy_set is not None:
            names.update((name, fact.type) for name, fact in self.policy_set.catalogue.items())
        if self.policy_set is not None:
            for purpose in self.policy_set.purposes.values():
                for spec in purpose.evidence:
                    if "." not in spec.name:
                        names.setdefault(spec.name, spec.type)
        for name in self.facts:
            if name not in ROOTS:
                names.setdefault(name, ANY)
        return names

    def scope(self) -> Scope:
        return Scope(
            facts={name: FactBinding(t, guaranteed=False) for name, t in self.known_facts().items()},
            context=None,
            data=self.policy_set.data if self.policy_set is not None else {},
        )

    def words(self) -> list[str]:
        """Everything worth completing in an expression."""
        words = set(self.known_facts())
        words.update(f"subject.{name}" for name in SUBJECT_FIELDS)
        words.update(f"{name}(" for name in (*FUNCTIONS, *QUANTIFIERS))
        words.update(_KEYWORDS)
        if self.policy_set is not None:
            words.update(f"data.{name}" for name in self.policy_set.data)
            for purpose in self.policy_set.purposes.values():
                words.update(f"context.{f.name}" for f in purpose.context)
                words.update(f"consent.{name}" for name in purpose.consent)
        return sorted(words)

    def purposes(self) -> list[str]:
        return sorted(self.policy_set.purposes) if self.policy_set is not None else []

    # -- one input ---------------------------------------------------------------------
    def handle(self, text: str) -> bool:
        """Act on one complete input; False when the session should end."""
        text = text.strip()
        if not text or text.startswith("#"):
            return True
        if not text.startswith(":"):
            self.evaluate(text)
            return True
        command, _, arg = text.partition(" ")
        arg = arg.strip()
        handlers: dict[str, Callable[[str], None]] = {
            ":set": self.cmd_set,
            ":unset": self.cmd_unset,
            ":facts": self.cmd_facts,
            ":clear": lambda _: self.cmd_facts("{}"),
            ":decide": self.cmd_decide,
            ":explain": self.cmd_explain,
            ":purposes": self.cmd_purposes,
            ":reload": lambda _: self.reload(),
            ":help": lambda _: self.console.print(HELP, markup=False, highlight=False),
        }
        if command in (":quit", ":q", ":exit"):
            return False
        handler = handlers.get(command)
        if handler is None:
            close = difflib.get_close_matches(command, [*COMMANDS, ":q", ":exit"], n=1)
            self.error(f"unknown command {command}" + (f"; did you mean {close[0]}?" if close else "; try :help"))
            return True
        handler(arg)
        return True

    def evaluate(self, text: str) -> None:
        source = dsl.SourceText(text, file="<repl>")
        try:
            node = dsl.parse(source)
        except dsl.ParseFailure as failure:
            self.show_diagnostic(failure.diagnostic)
            return
        checked = dsl.check(node, source, self.scope())
        for diagnostic in checked.diagnostics:
            self.show_diagnostic(diagnostic)
        if not checked.ok:
            return
        data = self.policy_set.data if self.policy_set is not None else {}
        value = dsl.compile_expression(checked, data)(self.facts)
        self.console.print(format_value(value), markup=False, highlight=self.color)

    def cmd_set(self, arg: str) -> None:
        name, _, raw = arg.partition(" ")
        if not name or not raw.strip():
            self.error("usage: :set NAME VALUE   (VALUE is JSON, e.g. :set context.amount 12000)")
            return
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            self.error(f"`{name}` is not a fact name")
            return
        try:
            value = parse_value(raw)
        except json.JSONDecodeError as err:
            self.error(f"invalid value: {err.msg} (strings need double quotes: \"AB123\")")
            return
        _set_path(self.facts, name, value)
        self.console.print(f"{escape(name)} = {escape(format_value(value))}", highlight=False)

    def cmd_unset(self, arg: str) -> None:
        if not _unset_path(self.facts, arg):
            self.error(f"`{arg}` is not set")

    def cmd_facts(self, arg: str) -> None:
        if arg:
            try:
                value = json.loads(arg)
            except json.JSONDecodeError as err:
                self.error(f"invalid JSON: {err.msg} at column {err.colno}")
                return
            if not isinstance(value, dict):
                self.error("facts must be a JSON object")
                return
            self.facts = value
            self.console.print(f"{len(value)} fact(s) set", highlight=False)
            return
        table = Table(title="facts", show_edge=False)
        for column in ("name", "type", "value"):
            table.add_column(column)
        for name, fact_type in sorted(self.known_facts().items()):
            value = self.facts.get(name, UNDEFINED)
            table.add_row(escape(name), escape(str(fact_type)), escape(format_value(value)))
        for root in ROOTS:
            if root in self.facts:
                table.add_row(root, "map", escape(format_value(self.facts[root])))
        self.console.print(table)

    def cmd_purposes(self, _: str) -> None:
        if self.policy_set is None:
            self.error("no policy set loaded (fix the errors and :reload)")
            return
        table = Table(title="purposes", show_edge=False)
        for column in ("purpose", "evidence", "rules", "description"):
            table.add_column(column)
        for name, purpose in sorted(self.policy_set.purposes.items()):
            table.add_row(
                escape(name), escape(", ".join(purpose.facts)), str(len(purpose.rules)), escape(purpose.description)
            )
        self.console.print(table)

    def cmd_decide(self, arg: str) -> None:
        if self.policy_set is None:
            self.error("no policy set loaded (fix the errors and :reload)")
            return
        if not arg:
            self.error(f"usage: :decide PURPOSE (one of: {', '.join(self.purposes())})")
            return
        if arg not in self.policy_set.purposes:
            close = difflib.get_close_matches(arg, self.purposes(), n=1)
            hint = f"did you mean {close[0]}?" if close else f"known purposes: {', '.join(self.purposes())}"
            self.error(f"unknown purpose `{arg}`; {hint}")
            return
        self.last = self.policy_set.decide(arg, self.facts, explain=True)
        self.show_decision(self.last)

    def cmd_explain(self, _: str) -> None:
        if self.last is None:
            self.error("no decision yet: use :decide PURPOSE first")
            return
        self.console.print(json.dumps(self.last.as_json(), indent=2, default=str), markup=False, highlight=self.color)

    def show_decision(self, decision: Decision) -> None:
        style = _STATUS_STYLE.get(decision.status, "bold")
        line = f"[bold]{escape(decision.purpose)}[/bold]: [{style}]{decision.status}[/{style}] ({escape(decision.reason)})"
        if decision.conditions:
            line += f" conditions: {escape(', '.join(decision.conditions))}"
        if decision.line is not None:
            line += f"  [dim]rule {(decision.rule or 0) + 1}, line {decision.line}[/dim]"
        self.console.print(line, highlight=False)
        entries = decision.explanation or []
        evidence = [e for e in entries if e.get("kind") == "evidence"]
        rules = [e for e in entries if e.get("kind") == "rule"]
        if evidence:
            table = Table(title="evidence", show_edge=False, title_justify="left")
            for column in ("fact", "expected", "actual", "status"):
                table.add_column(column)
            for e in evidence:
                status = e["status"] + (f" ({e['detail']})" if "detail" in e else "")
                status_style = "green" if e["status"] == "ok" else ("yellow" if e["status"] == "unexpected" else "red")
                table.add_row(
                    escape(e["fact"]),
                    escape(format_value(e["expected"])) if "expected" in e else "-",
                    escape(format_value(e["actual"])) if e["actual"] != "undefined" else "undefined",
                    f"[{status_style}]{escape(status)}[/{status_style}]",
                )
            self.console.print(table)
        if rules:
            table = Table(title="rules tried", show_edge=False, title_justify="left")
            for column in ("#", "line", "condition", "result", "values read"):
                table.add_column(column)
            for e in rules:
                result = f"[green]match -> {e['outcome']}[/green]" if e.get("matched") else "[dim]no match[/dim]"
                reads = ", ".join(f"{k}={format_value(v)}" for k, v in e.get("reads", {}).items())
                notes = "; ".join(e.get("notes", []))
                table.add_row(
                    str(e["index"] + 1), str(e["line"]), escape(e["condition"]), result,
                    escape(reads + (f" [{notes}]" if notes else "")),
                )
            self.console.print(table)
        if any(e.get("kind") == "default" for e in entries):
            self.console.print("no rule matched: fail (no_rule_matched)", highlight=False)


# -- input -------------------------------------------------------------------------------
def _plain_inputs(stream: TextIO) -> Iterator[str]:
    """Complete inputs from piped lines (no prompt, no history)."""
    buffer: list[str] = []
    for line in stream:
        buffer.append(line.rstrip("\n"))
        text = "\n".join(buffer)
        if not incomplete(text):
            yield text
            buffer = []
    if buffer:
        yield "\n".join(buffer)


def _terminal_inputs(session: Session) -> Iterator[str]:
    """Complete inputs from prompt_toolkit: history, completion, multi-line editing."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    class _Completer(Completer):
        def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
            before = document.text_before_cursor
            word = re.search(r"[:A-Za-z_][\w.]*$", before)
            prefix = word.group() if word else ""
            stripped = before.lstrip()
            if stripped.startswith(":") and " " not in stripped:
                options: list[str] = [*COMMANDS]
            elif re.match(r"\s*:(decide)\s+\S*$", before):
                options = session.purposes()
            elif stripped.startswith(":") and not re.match(r"\s*:(set|unset)\s+\S*$", before):
                options = []
            else:
                options = session.words()
            for option in options:
                if option.lower().startswith(prefix.lower()) and option != prefix:
                    yield Completion(option, start_position=-len(prefix))

    history: History
    try:
        path = Path(os.environ.get("IDGW_HISTORY_FILE", HISTORY_FILE)).expanduser()
        path.touch(exist_ok=True)
        history = FileHistory(str(path))
    except OSError:
        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(
        history=history,
        completer=_Completer(),
        complete_while_typing=False,
        multiline=Condition(lambda: incomplete(prompt.default_buffer.text)),
        prompt_continuation=lambda width, line, wrap: CONTINUATION,
    )
    while True:
        try:
            yield prompt.prompt(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


def run(
    directory: str, stdin: TextIO | None = None, color: bool | None = None,
    catalogue: Mapping[str, dsl.Fact] | None = None,
) -> None:
    """The read-eval-print loop over `directory` until `:quit` or end of input."""
    stdin = stdin or sys.stdin
    interactive = stdin.isatty() and sys.stdout.isatty()
    if color is None:
        color = interactive and not os.environ.get("NO_COLOR")
    # Piped output is read by scripts and logs: no wrapping at an imaginary 80 columns.
    console = Console(
        force_terminal=color, no_color=not color, highlight=color, soft_wrap=not interactive,
        width=None if interactive else 160,
    )
    session = Session(directory=directory, console=console, color=color, catalogue=dict(catalogue or {}))
    if interactive:
        console.print("ID Gateway policy REPL. :help for commands, :quit to leave.", highlight=False)
    session.reload()
    inputs = _terminal_inputs(session) if interactive else _plain_inputs(stdin)
    for text in inputs:
        if not session.handle(text):
            break


__all__ = ["HELP", "PROMPT", "Session", "format_value", "incomplete", "parse_value", "run"]
