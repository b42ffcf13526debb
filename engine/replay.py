"""Replay: decide recorded decisions again with a candidate policy set, and compare.

A `Record` is what a decision was made on and what it answered: the facts given to the
engine, the request context (its sensitive values replaced by a keyed hash), which
facts and context fields the recorded purpose could have been given, and the outcome.
`replay(records, candidate)` decides each record with the candidate and counts, per
purpose, the transitions `recorded status/reason -> candidate status/reason`, with up
to five example decision ids each. It streams: memory holds the counts, never the
records.

A record is *not replayable* when the candidate's evaluation reads something the record
cannot supply, and the name of what is missing is counted instead of a guess:

- the purpose does not exist in the candidate (`purpose`);
- a fact or consent the recorded purpose was not given, because it did not declare or
  read it (`is_pep`, `consent.marketing`);
- a value stored only as a hash (`context.national_id`, a sensitive field; `subject.sub`,
  pseudonymised), or a context field the recorded purpose's schema did not have, so no
  request could carry it (`context.channel`);
- the request was refused before the engine decided (`refused:missing_consent`): there
  is no decision to compare with.

What a candidate purpose *may* read is known at load time; only a record that lacks
some of it is decided with an explanation, to learn what the evaluation actually read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dsl import ast
from dsl.types import ROOTS
from engine.policyset import PolicySet
from engine.purpose import Purpose

#: Example decision ids kept per transition.
EXAMPLES = 5


@dataclass(slots=True)
class Record:
    """One recorded decision. (Not frozen: one is built per live decision in shadow
    evaluation, and a frozen dataclass sets each field through `object.__setattr__`.)"""

    decision_id: str
    purpose: str
    #: The facts the engine was given (`subject`, `consent` and the evidence facts).
    facts: Mapping[str, object]
    #: The request context as recorded: a sensitive field's value is a keyed hash.
    context: Mapping[str, object]
    status: str
    reason: str
    #: Paths whose recorded value is a hash, not the value (`context.national_id`,
    #: `subject.sub`).
    hashed: frozenset[str] = frozenset()
    #: Facts (and `consent.<x>`) the recorded purpose was given or could have been.
    declared: frozenset[str] = frozenset()
    #: The recorded purpose's context schema fields; None when it had no schema.
    fields: frozenset[str] | None = None
    #: Refused before the engine decided (consent, evidence): nothing to replay.
    refused: bool = False


def given_to(purpose: Purpose) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """What a request for `purpose` could give the engine, as a record states it: its
    declared facts and the consents its rules read (`declared`), and its context
    schema's fields (`fields`; None when it has no schema)."""
    declared = (*purpose.facts, *("consent." + name for name in purpose.consents_read))
    return declared, tuple(spec.name for spec in purpose.context) if purpose.context else None


@dataclass(slots=True)
class Transition:
    before: tuple[str, str]
    after: tuple[str, str]
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "from": {"status": self.before[0], "reason": self.before[1]},
            "to": {"status": self.after[0], "reason": self.after[1]},
            "count": self.count,
            "examples": list(self.examples),
        }


@dataclass(slots=True)
class PurposeReport:
    replayed: int = 0
    changed: int = 0
    transitions: dict[tuple[tuple[str, str], tuple[str, str]], Transition] = field(default_factory=dict)
    not_replayable: Counter[str] = field(default_factory=Counter)

    def count(self, decision_id: str, before: tuple[str, str], after: tuple[str, str]) -> None:
        """One decision replayed: `before` as recorded, `after` as the candidate decides."""
        self.replayed += 1
        if before != after:
            self.changed += 1
        transition = self.transitions.get((before, after))
        if transition is None:
            transition = self.transitions[(before, after)] = Transition(before, after)
        transition.count += 1
        if len(transition.examples) < EXAMPLES:
            transition.examples.append(decision_id)

    def to_json(self) -> dict[str, object]:
        ordered = sorted(self.transitions.values(), key=lambda t: (-t.count, t.before, t.after))
        return {
            "replayed": self.replayed,
            "changed": self.changed,
            "transitions": [t.to_json() for t in ordered],
            "not_replayable": {
                "count": sum(self.not_replayable.values()),
                "why": dict(sorted(self.not_replayable.items())),
            },
        }


@dataclass(slots=True)
class Report:
    """The outcome of a replay, per purpose; `to_json` gives the documented shape."""

    candidate_revision: str
    purposes: dict[str, PurposeReport] = field(default_factory=dict)

    @property
    def replayed(self) -> int:
        return sum(p.replayed for p in self.purposes.values())

    @property
    def changed(self) -> int:
        return sum(p.changed for p in self.purposes.values())

    @property
    def not_replayable(self) -> int:
        return sum(sum(p.not_replayable.values()) for p in self.purposes.values())

    def to_json(self) -> dict[str, object]:
        return {
            "candidate_revision": self.candidate_revision,
            "replayed": self.replayed,
            "changed": self.changed,
            "not_replayable": self.not_replayable,
            "purposes": {name: report.to_json() for name, report in sorted(self.purposes.items())},
        }

    def to_text(self) -> str:
        lines = [
            f"candidate {self.candidate_revision}: {self.replayed} decisions replayed, {self.changed} changed, "
            f"{self.not_replayable} not replayable"
        ]
        for name, report in sorted(self.purposes.items()):
            lines.append(f"{name}: {report.replayed} replayed, {report.changed} changed")
            for t in sorted(report.transitions.values(), key=lambda t: (-t.count, t.before, t.after)):
                if t.before != t.after:
                    lines.append(f"  {_outcome(t.before)} -> {_outcome(t.after)}: {t.count} "
                                 f"(e.g. {', '.join(t.examples)})")
            if report.not_replayable:
                why = ", ".join(f"{k} {n}" for k, n in sorted(report.not_replayable.items()))
                lines.append(f"  not replayable: {sum(report.not_replayable.values())} ({why})")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [
            "### Policy replay",
            "",
            f"Candidate `{self.candidate_revision[:19]}`: **{self.replayed}** recorded decisions replayed, "
            f"**{self.changed}** changed, {self.not_replayable} not replayable.",
        ]
        for name, report in sorted(self.purposes.items()):
            lines += ["", f"#### `{name}`: {report.changed} of {report.replayed} changed", ""]
            changes = [t for t in report.transitions.values() if t.before != t.after]
            if changes:
                lines += ["| recorded | candidate | decisions | examples |", "|---|---|---:|---|"]
                for t in sorted(changes, key=lambda t: (-t.count, t.before, t.after)):
                    examples = ", ".join(f"`{e}`" for e in t.examples)
                    lines.append(f"| {_outcome(t.before)} | {_outcome(t.after)} | {t.count} | {examples} |")
            else:
                lines.append("No decision changes.")
            if report.not_replayable:
                why = ", ".join(f"`{k}` {n}" for k, n in sorted(report.not_replayable.items()))
                lines += ["", f"Not replayable: {sum(report.not_replayable.values())} ({why})."]
        return "\n".join(lines) + "\n"


def _outcome(outcome: tuple[str, str]) -> str:
    return f"{outcome[0]}/{outcome[1]}"


@dataclass(frozen=True, slots=True)
class _Reads:
    """What a candidate purpose may read: facts (and `consent.<x>`), context fields,
    whether it reads the context in a way no field name says (`context[x]`), and the
    subject's fields."""

    facts: frozenset[str]
    fields: frozenset[str]
    any_field: bool
    subject: frozenset[str]


def _reads(purpose: Purpose) -> _Reads:
    facts: set[str] = {spec.name for spec in purpose.evidence}
    fields: set[str] = set()
    subject: set[str] = set()
    any_field = False
    for condition in purpose.program.conditions:
        if condition is None:
            continue
        facts |= condition.checked.facts_used
        parents: dict[int, ast.Expr] = {}
        nodes = ast.walk(condition.node)
        for node in nodes:
            for child in ast.children(node):
                parents[id(child)] = node
        for node in nodes:
            if isinstance(node, ast.Name) and node.name == "subject":
                parent = parents.get(id(node))
                subject.add(parent.name if isinstance(parent, ast.Attr) else "*")
                continue
            if not (isinstance(node, ast.Name) and node.name == "context"):
                continue
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attr):
                fields.add(parent.name)
            elif isinstance(parent, ast.Index) and isinstance(parent.index, ast.Literal) and isinstance(
                parent.index.value, str
            ) and parent.obj is node:
                fields.add(parent.index.value)
            else:
                any_field = True  # the context as a value, or an index only evaluation knows
    return _Reads(frozenset(f for f in facts if f not in ROOTS), frozenset(fields), any_field, frozenset(subject))


def _missing_fact(record: Record, name: str) -> bool:
    """The record cannot supply this fact (or consent) the candidate reads."""
    if name.startswith("consent."):
        consents = record.facts.get("consent")
        present = isinstance(consents, Mapping) and name.split(".", 1)[1] in consents
    else:
        present = name in record.facts
    return not present and name not in record.declared


def _missing_field(record: Record, name: str) -> bool:
    """The record cannot supply this context field: hashed, or no request could carry it."""
    if "context." + name in record.hashed:
        return True
    return name not in record.context and record.fields is not None and name not in record.fields


class Replayer:
    """A replay in progress: `add` each record, read `report` at any time."""

    def __init__(self, candidate: PolicySet) -> None:
        self.candidate = candidate
        self.report = Report(candidate.revision)
        self.reads = {name: _reads(purpose) for name, purpose in candidate.purposes.items()}
        #: (purpose, declared, fields, hashed) -> nothing the candidate reads can be missing
        self._clean: dict[tuple[str, frozenset[str], frozenset[str] | None, frozenset[str]], bool] = {}

    def _statically_clean(self, record: Record, reads: _Reads) -> bool:
        """Whether every record shaped like this one (what it declared, its schema, what
        it hashed) gives the candidate everything it may read: then `why_not` is empty."""
        key = (record.purpose, record.declared, record.fields, record.hashed)
        clean = self._clean.get(key)
        if clean is None:
            if len(self._clean) > 10_000:
                self._clean.clear()
            clean = self._clean[key] = (
                not (reads.facts - record.declared)
                and not record.hashed
                and not (reads.any_field and record.fields is not None)
                and (record.fields is None or not (reads.fields - record.fields))
            )
        return clean

    def why_not(self, record: Record, reads: _Reads, facts: Mapping[str, Any]) -> list[str]:
        """The names the candidate's evaluation of `record` reads and it cannot supply."""
        # a declared fact is always suppliable, and a field is missing only when hashed
        # or outside the recorded schema: the common record needs only set differences
        suspects = sorted(name for name in reads.facts - record.declared if _missing_fact(record, name))
        if record.hashed or record.fields is not None:
            fields = reads.fields if record.hashed or record.fields is None else reads.fields - record.fields
            suspects += [f"context.{name}" for name in sorted(fields) if _missing_field(record, name)]
        if record.hashed and reads.subject:
            suspects += [path for path in record.hashed if path.startswith("subject.")
                         and (path.removeprefix("subject.") in reads.subject or "*" in reads.subject)]
        if not suspects and not (reads.any_field and (record.hashed or record.fields is not None)):
            return []
        # what this evaluation actually read: the explanation's reads and evidence
        decision = self.candidate.decide(record.purpose, facts, explain=True)
        read: set[str] = set()
        for entry in decision.explanation or []:
            if entry.get("kind") == "evidence":
                read.add(str(entry.get("fact")))
            read.update(str(path) for path in entry.get("reads", {}))
        missing: list[str] = []
        for path in sorted(read):
            head = path.split("[", 1)[0]
            if head.startswith("context."):
                name = head.split(".")[1]
                if _missing_field(record, name):
                    missing.append(f"context.{name}")
            elif head.startswith("subject."):
                if ".".join(head.split(".")[:2]) in record.hashed:
                    missing.append(".".join(head.split(".")[:2]))
            elif head.startswith("consent."):
                if _missing_fact(record, ".".join(head.split(".")[:2])):
                    missing.append(".".join(head.split(".")[:2]))
            elif head.split(".")[0] not in ROOTS and _missing_fact(record, head.split(".")[0]):
                missing.append(head.split(".")[0])
        return sorted(set(missing))

    def decide(self, record: Record) -> tuple[str, str] | list[str]:
        """The candidate's `(status, reason)` for `record`, or the names of what it reads
        that the record cannot supply (not replayable)."""
        if record.refused:
            return ["refused:" + record.reason]
        reads = self.reads.get(record.purpose)
        if reads is None:
            return ["purpose"]
        # the facts as given when they hold the context already (a live request's, for the
        # shadow set): the engine does not change its input
        facts: Mapping[str, Any] = (
            record.facts if record.facts.get("context") is record.context
            else {**record.facts, "context": dict(record.context)}
        )
        if not self._statically_clean(record, reads):
            missing = self.why_not(record, reads, facts)
            if missing:
                return missing
        decision = self.candidate.decide(record.purpose, facts)
        return decision.status, decision.reason

    def add(self, record: Record) -> None:
        purpose_report = self.report.purposes.setdefault(record.purpose, PurposeReport())
        outcome = self.decide(record)
        if isinstance(outcome, list):
            purpose_report.not_replayable.update(outcome)
        else:
            purpose_report.count(record.decision_id, (record.status, record.reason), outcome)


class ApprovalError(ValueError):
    """An approved-changes document that is not a replay report's shape."""


def approved_changes(document: object) -> frozenset[tuple[str, tuple[str, str], tuple[str, str]]]:
    """The changes an approved list allows: `(purpose, from, to)` for each transition of
    `document`, a replay report as `to_json` gives it (counts and examples are ignored,
    so last week's approved report still applies to this week's window)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("purposes"), Mapping):
        raise ApprovalError('expected a replay report: {"purposes": {"<purpose>": {"transitions": [...]}}}')
    approved = set()
    for purpose, entry in document["purposes"].items():
        transitions = entry.get("transitions") if isinstance(entry, Mapping) else None
        if not isinstance(transitions, list):
            raise ApprovalError(f"purposes.{purpose}.transitions: expected a list")
        for number, transition in enumerate(transitions):
            where = f"purposes.{purpose}.transitions[{number}]"
            ends = []
            for end in ("from", "to"):
                outcome = transition.get(end) if isinstance(transition, Mapping) else None
                if not (isinstance(outcome, Mapping) and isinstance(outcome.get("status"), str)
                        and isinstance(outcome.get("reason"), str)):
                    raise ApprovalError(f'{where}.{end}: expected {{"status": ..., "reason": ...}}')
                ends.append((outcome["status"], outcome["reason"]))
            if ends[0] != ends[1]:
                approved.add((str(purpose), ends[0], ends[1]))
    return frozenset(approved)


def unapproved(report: Report, approved: frozenset[tuple[str, tuple[str, str], tuple[str, str]]]
               ) -> list[tuple[str, Transition]]:
    """The changes of `report` the approved list does not name, most frequent first."""
    found = [
        (name, t) for name, purpose in sorted(report.purposes.items())
        for t in purpose.transitions.values()
        if t.before != t.after and (name, t.before, t.after) not in approved
    ]
    return sorted(found, key=lambda item: (-item[1].count, item[0], item[1].before, item[1].after))


def replay(records: Iterable[Record], candidate: PolicySet) -> Report:
    """Decide every record with `candidate` and count what changes (streaming)."""
    replayer = Replayer(candidate)
    for record in records:
        replayer.add(record)
    return replayer.report


__all__ = [
    "EXAMPLES", "ApprovalError", "PurposeReport", "Record", "Replayer", "Report", "Transition", "approved_changes",
    "given_to",
    "replay", "unapproved",
]
