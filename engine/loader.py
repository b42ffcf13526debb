"""Load stage: a policy directory -> a checked, compiled `PolicySet`.

The files are discovered and read (their contents make the revision), then the stages of
`STAGES` run in order, each collecting diagnostics rather than stopping. `build()`
returns everything it found; `load()` raises `PolicyError` when any of it is an error.
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any, Literal

import re2
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

import dsl
from dsl import ROOTS, SCHEMA_TYPES, Diagnostic, Fact, FactBinding, PolicyError, Required, Scope
from dsl.runtime import compile_regex, regex_error, utc_now
from dsl.types import ANY, BOOL, type_of_value
from engine.context import ContextValidator
from engine.policyset import Decision, PolicySet, evidence_failures
from engine.purpose import OUTCOMES, ContextField, EvidenceSpec, Purpose, Rule, conforms
from engine.schema import ContextFieldModel, PolicyFileModel, PurposeModel, RuleModel
from engine.yaml_source import YamlDocument, read_yaml

_YAML_SUFFIXES = (".yaml", ".yml")
#: What may name an evidence fact (besides the roots of `ROOTS`), a context field or a data document.
FACT_NAME = re.compile(r"^(consent\.)?[A-Za-z_][A-Za-z0-9_]*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATA_SUFFIXES = (*_YAML_SUFFIXES, ".json")


@dataclass(slots=True)
class Layout:
    """The files of a policy directory, by role, as paths relative to `root`."""

    root: Path
    policies: list[Path] = field(default_factory=list)
    tests: list[Path] = field(default_factory=list)
    data: list[Path] = field(default_factory=list)


Role = Literal["policy", "test", "data"]


def is_test_file(path: PurePath) -> bool:
    return path.stem.endswith("_test") or "tests" in path.parts[:-1]


def role_of(relative: PurePath) -> Role | None:
    """What a file of a policy directory is, by its path relative to the directory: a
    policy file, a test file, a data document, or None for a file the loader skips
    (hidden files and editor droppings, anything that is not YAML or, under `data/`, JSON)."""
    parts = relative.parts
    if not parts or any(part.startswith((".", "#", "_")) or part.endswith("~") for part in parts):
        return None
    if parts[0] == "data":
        return "data" if relative.suffix in _DATA_SUFFIXES else None
    if relative.suffix in _YAML_SUFFIXES:
        return "test" if is_test_file(relative) else "policy"
    return None


def discover(path: str | Path) -> Layout:
    """Find policy, test and data files. Hidden files and editor droppings are skipped."""
    target = Path(path)
    if target.is_file():
        layout = Layout(root=target.parent)
        # Only the file's own folder counts: a file under some `tests/` further up is not a test.
        (layout.tests if is_test_file(Path(target.parent.name, target.name)) else layout.policies).append(target)
        data_dir = target.parent / "data"
        if data_dir.is_dir():
            layout.data = sorted(p for p in data_dir.iterdir() if _is_data_file(p))
        return layout
    layout = Layout(root=target)
    if not target.is_dir():
        return layout
    by_role: dict[Role, list[Path]] = {"policy": layout.policies, "test": layout.tests, "data": layout.data}
    for candidate in sorted(target.rglob("*")):
        role = role_of(candidate.relative_to(target))
        if role is not None and candidate.is_file():
            by_role[role].append(candidate)
    return layout


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.suffix in _DATA_SUFFIXES and not path.name.startswith((".", "#"))


def decode_source(content: bytes) -> str:
    """A file's text as the loader reads it: UTF-8, line ends `\\r\\n` and `\\r` read as
    `\\n` (what Python's text files do). The revision is taken over this text, so a file
    checked out with Windows line ends has the revision of the same file with Unix ones."""
    return content.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _read_text(path: Path, diagnostics: list[Diagnostic]) -> str | None:
    try:
        return decode_source(path.read_bytes())
    except (OSError, UnicodeDecodeError) as err:
        diagnostics.append(Diagnostic(code="E004", message=f"cannot read file: {err}", file=str(path)))
        return None


def plain(value: Any) -> Any:
    """YAML values as JSON-like data: dates become ISO strings, keys become strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def revision_of(files: Iterable[tuple[str, bytes]]) -> str:
    """`sha256:` over (relative path, content) pairs in path order: stable across machines."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        digest.update(name.encode() + b"\0" + str(len(content)).encode() + b"\0" + content)
    return "sha256:" + digest.hexdigest()


@dataclass(slots=True)
class LoadResult:
    """Everything `build()` found: the policy set (when there is no error) and diagnostics."""

    policy_set: PolicySet | None
    diagnostics: list[Diagnostic]
    layout: Layout

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class _Builder:
    def __init__(self, layout: Layout, clock: dsl.Clock, catalogue: Mapping[str, Fact]) -> None:
        self.layout = layout
        self.clock = clock
        self.catalogue = catalogue
        self.diagnostics: list[Diagnostic] = []
        self.texts: dict[Path, str] = {}
        for path in (*layout.data, *layout.policies):
            text = _read_text(path, self.diagnostics)
            if text is not None:
                self.texts[path] = text
        self.revision = revision_of(
            (path.relative_to(layout.root).as_posix(), text.encode()) for path, text in self.texts.items()
        )
        self.data: dict[str, Any] = {}
        self.data_files: dict[str, str] = {}
        self.data_used: set[str] = set()
        self.purposes: dict[str, Purpose] = {}
        #: Facts read by the conditions of the purpose being built, errors or not.
        self.facts_seen: set[str] = set()
        self.purpose_sites: dict[str, tuple[str, int]] = {}

    def read_data(self) -> None:
        """Data documents (`data/*.yaml|json`): each readable as `data.<name>`."""
        for path in self.layout.data:
            text = self.texts.get(path)
            if text is None:
                continue
            name = path.stem
            doc = read_yaml(str(path), text) if path.suffix != ".json" else self._read_json(path, text)
            self.diagnostics.extend(doc.diagnostics)
            if doc.diagnostics:
                continue
            if not IDENTIFIER.match(name):
                self.diagnostics.append(
                    doc.diagnostic("E208", f"data document name `{name}` is not a valid identifier", None)
                )
                continue
            if name in self.data:
                self.diagnostics.append(doc.diagnostic("E208", f"data document `{name}` is defined twice", None))
                continue
            self.data[name] = plain(doc.value)
            self.data_files[name] = doc.file

    def _read_json(self, path: Path, text: str) -> YamlDocument:
        doc = YamlDocument(file=str(path), text=text, lines=text.splitlines())
        try:
            doc.value = json.loads(text)
        except json.JSONDecodeError as err:
            doc.diagnostics.append(
                Diagnostic(
                    code="E208",
                    message=f"invalid JSON: {err.msg}",
                    file=doc.file,
                    line=err.lineno,
                    col=err.colno,
                    source_line=doc.lines[err.lineno - 1] if 0 < err.lineno <= len(doc.lines) else None,
                )
            )
        return doc

    def read_policies(self) -> None:
        """Policy files: YAML with positions, structure by pydantic, then each purpose."""
        for path in self.layout.policies:
            text = self.texts.get(path)
            if text is None:
                continue
            doc = read_yaml(str(path), text)
            self.diagnostics.extend(doc.diagnostics)
            if any(d.severity == "error" and d.code == "E001" for d in doc.diagnostics):
                continue
            if doc.value is None:
                continue  # an empty file defines nothing
            raw = doc.value.get("purposes") if isinstance(doc.value, dict) else None
            if not isinstance(raw, dict):
                try:
                    PolicyFileModel.model_validate(doc.value)
                except ValidationError as err:
                    self._structure_errors(doc, err.errors())
                continue
            # Each purpose is validated on its own so that one malformed purpose does not
            # hide the problems of the others: every problem is reported in one run.
            try:
                PolicyFileModel.model_validate({**doc.value, "purposes": {}})
            except ValidationError as err:
                self._structure_errors(doc, err.errors())
            for name, value in raw.items():
                purpose, errors = _validate_purpose(value)
                if purpose is None:
                    self._structure_errors(doc, errors, prefix=("purposes", str(name)))
                    continue
                self.build_purpose(doc, str(name), purpose)
                release(purpose.rules)
            release(doc.node, doc.value)

    def _structure_errors(
        self, doc: YamlDocument, errors: Iterable[Any], prefix: tuple[str | int, ...] = ()
    ) -> None:
        for error in errors:
            loc = prefix + tuple(
                p for p in error["loc"] if not (isinstance(p, str) and p in ("str", "dict[str,any]"))
            )
            kind = error["type"]
            where = ".".join(str(p) for p in loc) or "file"
            if kind == "extra_forbidden":
                node = doc.locate(loc, key=True)
                parent = ".".join(str(p) for p in loc[:-1]) or "the file"
                message = f"unknown key `{loc[-1]}` in {parent}"
                allowed = _allowed_keys(loc)
                hint = None
                if allowed:
                    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                    hint = f"did you mean `{close[0]}`?" if close else f"allowed keys: {', '.join(allowed)}"
                self.diagnostics.append(doc.diagnostic("E002", message, node, hint=hint))
            elif kind == "missing":
                node = doc.locate(loc[:-1])
                self.diagnostics.append(doc.diagnostic("E002", f"`{where}` is required", node))
            else:
                node = doc.locate(loc)
                self.diagnostics.append(doc.diagnostic("E002", f"{where}: {error['msg']}", node))

    def build_purpose(self, doc: YamlDocument, name: str, model: PurposeModel) -> None:
        """One purpose, in order: its name (E204 when taken), its evidence, its context
        schema, its rules (each condition prepared by shape: parsed, checked), then, when
        none of these found an error, the evidence no rule reads (W302) and the compiled
        program. With errors in its rules a purpose's fact usage is unknown: no W302."""
        line = self._claim(doc, name)
        if line is None:
            return
        base: tuple[str | int, ...] = ("purposes", name)
        errors_before = self._error_count()
        evidence = self._evidence(doc, base, model)
        context = self._context(doc, base, model)
        scope = Scope(
            facts={
                spec.name: FactBinding(spec.type, guaranteed=True) for spec in evidence if "." not in spec.name
            },
            context={f.name: f.type for f in context} if context else None,
            data=self.data,
            catalogue=self.catalogue,
        )
        self.facts_seen = set()
        rules, checked = self._rules(doc, base, model.rules, scope)
        used = self.facts_seen
        for c in checked:
            if c is not None:
                self.data_used |= c.checked.data_used
        if self._error_count() > errors_before:
            return
        self._unused_evidence(doc, base, evidence, used)
        self.purposes[name] = Purpose(
            name=name,
            description=model.description,
            file=doc.file,
            line=line,
            consent=tuple(model.consent),
            context=tuple(context),
            evidence=tuple(evidence),
            rules=tuple(rules),
            program=self._program(name, rules, checked[: len(rules)], evidence),
            context_check=ContextValidator(context),
            consents_read=tuple(sorted(f.split(".", 1)[1] for f in used if f.startswith("consent."))),
            revision=self.revision,
        )

    def _error_count(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    def _claim(self, doc: YamlDocument, name: str) -> int | None:
        """The line of the purpose's name, now taken; None (and E204) when another file
        or another place of this one defined it first."""
        key_node = doc.locate(("purposes", name), key=True)
        line = key_node.start_mark.line + 1 if key_node is not None else 1
        first = self.purpose_sites.get(name)
        if first is not None:
            self.diagnostics.append(
                doc.diagnostic(
                    "E204", f"purpose `{name}` is already defined at {first[0]}:{first[1]}", key_node
                )
            )
            return None
        self.purpose_sites[name] = (doc.file, line)
        return line

    def _unused_evidence(
        self, doc: YamlDocument, base: tuple[str | int, ...], evidence: list[EvidenceSpec], used: set[str]
    ) -> None:
        """W302 for each declared fact no rule reads (`consent.<x>` entries excepted)."""
        for i, spec in enumerate(evidence):
            if "." not in spec.name and spec.name not in used:
                node = doc.locate((*base, "evidence", i))
                self.diagnostics.append(
                    doc.diagnostic(
                        "W302", f"evidence `{spec.name}` is declared but no rule uses it", node,
                        severity="warning",
                        hint="the gateway still gathers it; remove it to minimise the data processed",
                    )
                )

    def _program(
        self, name: str, rules: list[Rule], conditions: list[dsl.Condition | None], evidence: list[EvidenceSpec]
    ) -> dsl.Program[Decision]:
        """The purpose's compiled decision function: each rule's prepared decision, the
        fail-closed default and the evidence check in front."""
        outcomes = [
            Decision(
                purpose=name, status=r.status, reason=r.reason, conditions=r.conditions,
                revision=self.revision, rule=r.index, line=r.line,
            )
            for r in rules
        ]
        default = Decision(purpose=name, status="fail", reason="no_rule_matched", revision=self.revision)
        required = [Required(spec.name, spec.type) for spec in evidence]
        failure = evidence_failures(name, evidence, self.revision)
        return dsl.compile_program(
            conditions, outcomes, default, dsl.EvidenceCheck(required, failure), data=self.data, clock=self.clock
        )

    def _evidence(self, doc: YamlDocument, base: tuple[str | int, ...], model: PurposeModel) -> list[EvidenceSpec]:
        specs: list[EvidenceSpec] = []
        seen: set[str] = set()
        for i, item in enumerate(model.evidence):
            node = doc.locate((*base, "evidence", i))
            if isinstance(item, dict):
                if len(item) != 1:
                    self.diagnostics.append(
                        doc.diagnostic("E206", "an evidence entry is a fact name or `name: expected value`", node)
                    )
                    continue
                fact, expected = next(iter(item.items()))
                expected = plain(expected)
            else:
                fact, expected = item, dsl.UNDEFINED
            fact = str(fact)
            if not FACT_NAME.match(fact) or fact in ROOTS:
                self.diagnostics.append(doc.diagnostic("E206", f"`{fact}` cannot name an evidence fact", node))
                continue
            if fact in seen:
                self.diagnostics.append(doc.diagnostic("E206", f"evidence `{fact}` is declared twice", node))
                continue
            seen.add(fact)
            if fact.startswith("consent."):
                fact_type = BOOL
            elif fact in self.catalogue:
                fact_type = self.catalogue[fact].type
            else:
                fact_type = type_of_value(expected) if expected is not dsl.UNDEFINED else ANY
            if self.catalogue and fact not in self.catalogue and not fact.startswith("consent."):
                hint = difflib.get_close_matches(fact, list(self.catalogue), n=1)
                self.diagnostics.append(
                    doc.diagnostic(
                        "W306",
                        f"`{fact}` is not a fact the gateway provides; only the data API can supply it",
                        node,
                        severity="warning",
                        hint=f"did you mean `{hint[0]}`?" if hint else None,
                    )
                )
            if expected is not dsl.UNDEFINED and fact_type.known and not conforms(expected, fact_type):
                self.diagnostics.append(
                    doc.diagnostic("E206", f"`{fact}` is a {fact_type}; expected value {expected!r} is not", node)
                )
                continue
            specs.append(EvidenceSpec(fact, fact_type, expected))
        return specs

    def _context(self, doc: YamlDocument, base: tuple[str | int, ...], model: PurposeModel) -> list[ContextField]:
        fields: list[ContextField] = []
        for name, spec in model.context.items():
            node = doc.locate((*base, "context", name), key=True)
            if not IDENTIFIER.match(name):
                self.diagnostics.append(doc.diagnostic("E207", f"context field `{name}` is not an identifier", node))
                continue
            field_type = SCHEMA_TYPES.get(spec.type)
            if field_type is None:
                self.diagnostics.append(
                    doc.diagnostic(
                        "E207", f"unknown context type `{spec.type}`",
                        doc.locate((*base, "context", name, "type")),
                        hint=f"one of: {', '.join(sorted(SCHEMA_TYPES))}",
                    )
                )
                continue
            if spec.pattern is not None:
                try:
                    compile_regex(spec.pattern)
                except re2.error as err:
                    self.diagnostics.append(
                        doc.diagnostic(
                            "E207", f"invalid pattern: {regex_error(err)}",
                            doc.locate((*base, "context", name, "pattern")),
                        )
                    )
                    continue
            fields.append(
                ContextField(
                    name=name,
                    type=field_type,
                    integer=spec.type == "integer",
                    required=spec.required,
                    pattern=spec.pattern,
                    enum=tuple(spec.enum) if spec.enum is not None else None,
                    minimum=spec.minimum,
                    maximum=spec.maximum,
                    max_length=spec.max_length,
                    sensitive=spec.sensitive,
                )
            )
        return fields

    def _rules(
        self, doc: YamlDocument, base: tuple[str | int, ...], models: list[RuleModel], scope: Scope
    ) -> tuple[list[Rule], list[dsl.Condition | None]]:
        """The purpose's reachable rules and their conditions, in order (None for `else`).

        Rules after an `else` or an always-true rule are unreachable (E203, once).
        """
        rules: list[Rule] = []
        conditions: list[dsl.Condition | None] = []
        shapes = dsl.Shapes(scope)
        closed_by: Rule | None = None
        reported = False
        sequence = doc.locate((*base, "rules"))
        nodes = sequence.value if isinstance(sequence, yaml.SequenceNode) else []
        for i, model in enumerate(models):
            rule_node = nodes[i] if i < len(nodes) else doc.locate((*base, "rules", i))
            if closed_by is not None and not reported:
                what = "an `else`" if closed_by.condition is None else "a rule that always matches"
                self.diagnostics.append(doc.diagnostic(
                    "E203",
                    f"rule {i + 1} is never reached: rule {closed_by.index + 1} (line {closed_by.line}) is {what}",
                    rule_node,
                ))
                reported = True
            found = self._rule(doc, base, i, model, rule_node, shapes)
            if found is None or closed_by is not None:
                continue  # an unreachable rule's own problems are reported; it is not kept
            rule, condition = found
            rules.append(rule)
            conditions.append(condition)
            if condition is None or self._always_true(doc, base, i, condition):
                closed_by = rule
        return rules, conditions

    def _rule(
        self, doc: YamlDocument, base: tuple[str | int, ...], i: int, model: RuleModel, node: yaml.Node | None,
        shapes: dsl.Shapes,
    ) -> tuple[Rule, dsl.Condition | None] | None:
        """One rule and its condition (None for `else`); None when the rule has an error."""
        has_if = "if_" in model.model_fields_set
        if has_if == (model.else_ is not None) or (model.else_ is not None and model.then is not None):
            message = (
                "a rule has either `if` with `then`, or `else`"
                if has_if or model.else_ is not None
                else "a rule needs `if` (with `then`) or `else`"
            )
            self.diagnostics.append(doc.diagnostic("E205", message, node))
            if has_if:
                self._condition(doc, node, shapes)  # its own problems still count
            return None
        outcome = model.then if has_if else model.else_
        if outcome is None:
            self.diagnostics.append(doc.diagnostic("E201", "`if` needs a `then` outcome", node))
            self._condition(doc, node, shapes)
            return None
        if outcome not in OUTCOMES:
            if has_if:
                self._condition(doc, node, shapes)
            close = difflib.get_close_matches(outcome, OUTCOMES, n=1)
            self.diagnostics.append(
                doc.diagnostic(
                    "E201",
                    f"invalid outcome `{outcome}`",
                    doc.locate((*base, "rules", i, "then" if has_if else "else")),
                    hint=f"did you mean `{close[0]}`?" if close else f"one of: {', '.join(OUTCOMES)}",
                )
            )
            return None
        if not model.reason:
            self.diagnostics.append(
                doc.diagnostic("E202", "rule has no `reason`", node, hint="every decision must say why")
            )
        if model.conditions and outcome != "pass_with_conditions":
            self.diagnostics.append(
                doc.diagnostic(
                    "W304", f"`conditions` on a `{outcome}` rule are ignored",
                    doc.locate((*base, "rules", i, "conditions"), key=True), severity="warning",
                )
            )
        condition: dsl.Condition | None = None
        text: str | None = None
        if has_if:
            condition, text = self._condition(doc, node, shapes)
            if condition is None:
                return None
        rule = Rule(
            index=i,
            line=node.start_mark.line + 1 if node is not None else 1,
            column=node.start_mark.column + 1 if node is not None else 1,
            condition=text,
            status=OUTCOMES[OUTCOMES.index(outcome)],  # the shared constant, not one string per rule
            reason=model.reason or "",
            conditions=tuple(model.conditions) if outcome == "pass_with_conditions" else (),
        )
        return rule, condition

    def _always_true(self, doc: YamlDocument, base: tuple[str | int, ...], i: int, condition: dsl.Condition) -> bool:
        """A constant condition is a warning (W301); one always true closes the list."""
        if not condition.checked.constant:
            return False
        value = dsl.compile_expression(condition.checked, self.data, self.clock)({})
        self.diagnostics.append(
            doc.diagnostic(
                "W301",
                f"condition is always {'true' if value is True else 'false'}",
                doc.locate((*base, "rules", i, "if")),
                severity="warning",
            )
        )
        return value is True

    def _condition(
        self, doc: YamlDocument, rule: yaml.Node | None, shapes: dsl.Shapes
    ) -> tuple[dsl.Condition | None, str | None]:
        node = doc.locate(("if",), start=rule) if rule is not None else None
        if not isinstance(node, yaml.ScalarNode):
            self.diagnostics.append(doc.diagnostic("E002", "`if` must be an expression (a string)", node))
            return None, None
        known = shapes.instance(node.value)
        if known is not None:  # an instance of a shape checked before: nothing new to report
            self.facts_seen |= known.checked.facts_used
            return known, node.value
        source = doc.source_text(node)
        try:
            condition = shapes.prepare(source)
        except dsl.ParseFailure as failure:
            self.diagnostics.append(failure.diagnostic)
            return None, None
        checked = condition.checked
        if condition.values:  # the first instance of a new shape: it checked clean
            self.facts_seen |= checked.facts_used
            return condition, source.text
        self.diagnostics.extend(checked.diagnostics)
        self.facts_seen |= checked.facts_used
        if checked.ok and checked.type.known and checked.type != BOOL:
            tree = checked.node
            self.diagnostics.append(
                source.diagnostic(
                    "E105", f"a condition must be a bool, this is a {checked.type}", tree.span.start, tree.span.end,
                    hint="compare it, e.g. `context.amount > 0`, or test it with exists()",
                )
            )
            return None, source.text
        return (condition if checked.ok else None), source.text

    def finish(self) -> None:
        """Checks across files: data documents no rule reads (W305)."""
        for name, file in self.data_files.items():
            if name not in self.data_used:
                self.diagnostics.append(
                    Diagnostic(
                        code="W305",
                        message=f"data document `{name}` is never referenced",
                        file=file,
                        severity="warning",
                        line=1,
                        col=1,
                    )
                )


#: Rules validated at a time: pydantic holds the GIL for a whole call, so one call over a
#: large rule list would stop every other thread (docs/performance.md, "A reload while
#: serving").
_VALIDATE_SLICE = 1000
_RULE_LIST = TypeAdapter(list[RuleModel])


def _validate_purpose(value: Any) -> tuple[PurposeModel | None, list[Any]]:
    """The purpose's model, or None and pydantic's errors (locations from the purpose).

    A long rule list is validated a slice at a time, so that a reload on a thread lets
    the threads serving decisions run; the errors are the ones one call would give.
    """
    rules = value.get("rules") if isinstance(value, dict) else None
    if not isinstance(rules, list) or len(rules) <= _VALIDATE_SLICE:
        try:
            return PurposeModel.model_validate(value), []
        except ValidationError as err:
            return None, err.errors()
    errors: list[Any] = []
    head: PurposeModel | None = None
    try:
        head = PurposeModel.model_validate({**value, "rules": rules[:1]})
    except ValidationError as err:  # the rules' own errors come from the slices below
        errors += [e for e in err.errors() if e["loc"][:1] != ("rules",)]
    validated: list[RuleModel] = []
    for start in range(0, len(rules), _VALIDATE_SLICE):
        try:
            validated += _RULE_LIST.validate_python(rules[start : start + _VALIDATE_SLICE])
        except ValidationError as err:
            errors += [{**e, "loc": ("rules", start + int(e["loc"][0]), *e["loc"][1:])} for e in err.errors()]
    if errors or head is None:
        return None, errors
    return head.model_copy(update={"rules": validated}), []


#: How many items `release` drops at a time (about a millisecond of deallocation).
_RELEASE_SLICE = 500


def release(*roots: object, depth: int = 4) -> None:
    """Empty the large lists of a tree (YAML nodes, plain values) a slice at a time.

    When the last reference to the YAML tree of a large file goes, CPython frees its
    millions of objects in one cascade without returning to the interpreter loop, so a
    reload on a thread would stop the threads serving decisions until it is done.
    Emptied slice by slice, other threads run between slices. Only the top `depth` levels
    are searched: large lists of rules sit there.
    """
    stack: list[tuple[object, int]] = [(root, 0) for root in roots]
    while stack:
        item, level = stack.pop()
        if isinstance(item, yaml.CollectionNode):
            children: Any = item.value
            inner = [v for pair in children for v in (pair if isinstance(pair, tuple) else (pair,))] \
                if len(children) <= _RELEASE_SLICE else ()
        elif isinstance(item, list):
            children = item
            inner = item if len(item) <= _RELEASE_SLICE else ()
        elif isinstance(item, dict):
            children = None
            inner = list(item.values())
        else:
            continue
        if children is not None and len(children) > _RELEASE_SLICE:
            while children:
                del children[-_RELEASE_SLICE:]
            continue
        if level < depth:
            stack.extend((child, level + 1) for child in inner)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows where an unknown key was found (for a hint)."""
    model: type[BaseModel]
    depth = len(loc)
    if depth == 1:
        model = PolicyFileModel
    elif depth == 3:
        model = PurposeModel
    elif depth == 5 and loc[2] == "rules":
        model = RuleModel
    elif depth == 5 and loc[2] == "context":
        model = ContextFieldModel
    else:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def build(
    path: str | Path, clock: dsl.Clock | None = None, catalogue: Mapping[str, Fact] | None = None
) -> LoadResult:
    """Run every load stage; return the policy set (if error-free) and all diagnostics.

    `catalogue`: the facts the deciding gateway provides (name -> `Fact`), which policies
    are checked against: their types, W303 for one used undeclared, W306 for evidence
    outside it. Without one, declared evidence is typed by its expected value only.
    """
    with _full_collections_postponed():
        return _build(path, clock, catalogue or {})


class _FullCollections:
    """Postpones the cyclic collector's *full* collections while policies load.

    A load allocates millions of objects that live until it ends (the YAML node tree
    above all). Each full collection would walk all of them, and it holds the GIL while
    it does, and meanwhile a server's other threads decide nothing. Young collections go on as usual for every
    thread; only the oldest generation waits, and the thresholds come back when the last
    concurrent load ends.
    """

    POSTPONED = 1 << 30

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads = 0
        self._saved: tuple[int, int, int] = gc.get_threshold()

    def __enter__(self) -> None:
        with self._lock:
            if self._loads == 0:
                self._saved = gc.get_threshold()
                young, middle, _ = self._saved
                gc.set_threshold(young, middle, self.POSTPONED)
            self._loads += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._loads -= 1
            if self._loads == 0:
                gc.set_threshold(*self._saved)


_full_collections = _FullCollections()


def _full_collections_postponed() -> _FullCollections:
    return _full_collections


#: The load stages, in order. Each adds what it finds to the diagnostics and none stops
#: the others, so one run reports every problem of a policy directory. The policy-file
#: stage builds each purpose in its own steps (`_Builder.build_purpose`).
STAGES: tuple[tuple[str, Callable[[_Builder], None]], ...] = (
    ("data documents", _Builder.read_data),
    ("policy files", _Builder.read_policies),
    ("across files", _Builder.finish),
)


def _build(path: str | Path, clock: dsl.Clock | None, catalogue: Mapping[str, Fact]) -> LoadResult:
    layout = discover(path)
    builder = _Builder(layout, clock or utc_now, catalogue)
    if not Path(path).exists():
        builder.diagnostics.append(Diagnostic(code="E209", message="no such file or directory", file=str(path)))
        return LoadResult(None, builder.diagnostics, layout)
    if not layout.policies:
        builder.diagnostics.append(
            Diagnostic(code="E209", message="no policy files (*.yaml) found", file=str(path))
        )
    for _, stage in STAGES:
        stage(builder)
    diagnostics = sorted(builder.diagnostics, key=lambda d: d.sort_key)
    if any(d.severity == "error" for d in diagnostics):
        return LoadResult(None, diagnostics, layout)
    policy_set = PolicySet(
        purposes=builder.purposes,
        revision=builder.revision,
        files=[str(p) for p in layout.policies],
        data=builder.data,
        warnings=[d for d in diagnostics if d.severity == "warning"],
        root=str(layout.root),
        tests=[str(p) for p in layout.tests],
        catalogue=catalogue,
    )
    return LoadResult(policy_set, diagnostics, layout)


def load(
    path: str | Path, clock: dsl.Clock | None = None, catalogue: Mapping[str, Fact] | None = None
) -> PolicySet:
    """Load, check and compile a policy directory (or one file), against the gateway's
    fact `catalogue` when given (see `build`).

    Raises `PolicyError` holding every diagnostic (errors and warnings) when any error
    is found.
    """
    result = build(path, clock, catalogue)
    if result.policy_set is None:
        raise PolicyError(result.diagnostics)
    return result.policy_set


__all__ = [
    "FACT_NAME", "IDENTIFIER", "STAGES", "Layout", "LoadResult", "Role", "build", "decode_source", "discover",
    "is_test_file", "load", "plain", "release", "revision_of", "role_of",
]
