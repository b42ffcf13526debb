"""The JSON Schema of policy files and test files, for editors and CI (`idgw policy schema`).

Sits beside the loader, not in its path: the loader checks files with its pydantic models
(`engine.schema`) and its stages; this module describes the same format as one JSON
Schema (draft 2020-12) so that an editor with a YAML language server validates, completes
and explains a policy file as it is typed. It is built from what the loader checks
against: the keys of the pydantic models, `OUTCOMES`, `SCHEMA_TYPES`, the fact-name
pattern, the test file keys and `SUBJECT_FIELDS`; and, when given, the catalogue of facts
the gateway provides (their types, for the expected values of evidence).

One document serves both kinds of file: a document with `cases` or `purpose` at the top
is a test file (`$defs/test_file`), any other a policy file (`$defs/policy_file`). The
loader tells them apart by path; an editor sees one document at a time.

What a schema cannot say is left to the loader, with its own codes: the rule language
(E1xx), an unreachable rule (E203), a purpose defined twice across files (E204), an
evidence fact declared twice in two forms (E206), a pattern RE2 refuses (E207), duplicate
YAML keys (E003), unknown purposes and facts in test files (E402, E403). Where the loader
accepts a value by converting it (the text `"yes"` for `required`, `"5"` for `minimum`)
or a key with no value as no key (`else:` beside `if`), the schema asks for the value
itself, and no key rather than an empty one.

Only keywords that draft-07 gives the same meaning are used (`if`/`then`/`else`, no
`dependentSchemas` or `prefixItems`), so editors whose schema support stops at draft-07
check a file the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from dsl import ROOTS, SCHEMA_TYPES, SUBJECT_FIELDS, Fact
from engine.loader import FACT_NAME, IDENTIFIER
from engine.purpose import OUTCOMES, type_schema
from engine.schema import ContextFieldModel, PolicyFileModel, PurposeModel, RuleModel
from engine.testing import INPUT_ROOTS

DIALECT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

_OUTCOME: Schema = {
    "enum": list(OUTCOMES),
    "description": "pass, pass_with_conditions (with `conditions`) or fail.",
}
_TEXT: Schema = {"type": "string"}
_TEXT_LIST: Schema = {"type": "array", "items": {"type": "string"}}


def _described(description: str, schema: Schema) -> Schema:
    return {"description": description, **schema}


def _keys(model: type[BaseModel], properties: Mapping[str, Schema]) -> Schema:
    """`properties` for one of the loader's models: exactly its keys, unknown ones refused.

    A key the model has and this schema does not describe (or the other way round) is a
    mistake that would let the two disagree: it raises at once.
    """
    keys = [field.alias or name for name, field in model.model_fields.items()]
    if sorted(keys) != sorted(properties):
        raise RuntimeError(f"{model.__name__}: the schema describes {sorted(properties)}, the loader {sorted(keys)}")
    return {"type": "object", "properties": dict(properties), "additionalProperties": False}


def _fact_name(catalogue: Mapping[str, Fact]) -> Schema:
    schema: Schema = {
        "type": "string",
        "pattern": FACT_NAME.pattern,
        "not": {"enum": list(ROOTS)},
        "description": (
            "A fact the purpose needs: the gateway gathers exactly the declared facts. "
            "Also `consent.<purpose>`, which makes that consent required."
        ),
    }
    if catalogue:
        schema["examples"] = sorted(catalogue)
    return schema


def _evidence(catalogue: Mapping[str, Fact]) -> Schema:
    name = _fact_name(catalogue)
    expected: Schema = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {key: name[key] for key in ("pattern", "not")},
        "properties": {
            fact.name: _described(f"{fact.type} from {fact.source}; the value is the one expected.", type_schema(fact.type))
            for fact in catalogue.values()
        },
        "patternProperties": {r"^consent\.": _described("a consent is true or false", {"type": "boolean"})},
        "description": (
            "`fact: expected value`. The expected value documents what a good subject looks like "
            "(explanations show it next to the actual value); it decides nothing by itself."
        ),
    }
    return {"description": "A fact name, or `fact: expected value`.", "anyOf": [name, expected]}


def _context_field() -> Schema:
    return _described(
        "One field the caller may send in the request's `context`.",
        _keys(ContextFieldModel, {
            "type": _described(
                "The field's type (`integer` is a whole number). Default `any`.",
                {"enum": sorted(SCHEMA_TYPES), "default": "any"},
            ),
            "description": _described("Free text.", {"type": ["string", "null"]}),
            "pattern": _described(
                "A regular expression (RE2) a string must match anywhere: anchor it with ^ and $ "
                "to test the whole value.",
                {"type": ["string", "null"]},
            ),
            "enum": _described("The allowed values.", {"type": ["array", "null"]}),
            "required": _described("true if the caller must send the field. Default false.", {"type": "boolean"}),
            "minimum": _described("The smallest number allowed (inclusive).", {"type": ["number", "null"]}),
            "maximum": _described("The largest number allowed (inclusive).", {"type": ["number", "null"]}),
            "max_length": _described(
                "The longest string allowed, in characters.", {"type": ["integer", "null"], "minimum": 0}
            ),
            "sensitive": _described(
                "Personal data: decision records keep a keyed hash of the value, never the value. Default false.",
                {"type": "boolean"},
            ),
        }),
    )


def _rule() -> Schema:
    schema = _keys(RuleModel, {
        "if": _described(
            "The condition, in the rule language: true decides with `then`; false or undefined goes on "
            "to the next rule.",
            {"type": ["string", "boolean"], "minLength": 1},
        ),
        "then": _described("The outcome when the condition is true. " + _OUTCOME["description"], _OUTCOME),
        "else": _described(
            "Instead of `if`/`then`: the outcome of a rule that always matches. It must be the last rule.",
            _OUTCOME,
        ),
        "reason": _described(
            "Why, in snake_case: returned to the caller and audited. Required on every rule.",
            {"type": "string", "minLength": 1},
        ),
        "conditions": _described(
            "What the caller must still do, for pass_with_conditions (ignored, with W304, on other outcomes).",
            _TEXT_LIST,
        ),
        "description": _described("Free text, no effect.", {"type": ["string", "null"]}),
    })
    # Either `if` with `then`, or `else` alone (E205, E201); a reason always (E202).
    return {
        "description": "`if` + `then`, or `else`; with a `reason`. Rules are tried in order; the first match decides.",
        **schema,
        "required": ["reason"],
        "if": {"required": ["else"]},
        "then": {"properties": {"if": False, "then": False}},
        "else": {"required": ["if", "then"]},
    }


def _purpose(catalogue: Mapping[str, Fact]) -> Schema:
    schema = _keys(PurposeModel, {
        "description": _described("The question the purpose answers. No effect on decisions.", _TEXT),
        "consent": _described(
            "The consents the subject must hold before the purpose is evaluated (otherwise missing_consent).",
            _TEXT_LIST,
        ),
        "context": _described(
            "The schema of the request's `context`: one entry per field the caller may send. Without it, "
            "any object is accepted and rules may read any `context.` field.",
            {
                "type": "object",
                "propertyNames": {"pattern": IDENTIFIER.pattern},
                "additionalProperties": {"$ref": "#/$defs/context_field"},
            },
        ),
        "evidence": _described(
            "The facts the purpose needs; each one is required (missing: fail with missing_evidence).",
            {"type": "array", "uniqueItems": True, "items": _evidence(catalogue)},
        ),
        "rules": _described(
            "Tried in order; the first rule whose condition is true decides. With none matching: "
            "fail, no_rule_matched.",
            {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/rule"}},
        ),
    })
    return {"description": "A question the gateway answers: its consents, context, evidence and rules.",
            **schema, "required": ["rules"]}


def _policy_file() -> Schema:
    schema = _keys(PolicyFileModel, {
        "purposes": _described(
            "The purposes this file defines, by name. A name may be defined once in the whole directory.",
            {"type": "object", "additionalProperties": {"$ref": "#/$defs/purpose"}},
        ),
    })
    return {
        "title": "ID Gateway policy file",
        "description": "A policy file (`*.yaml`): purposes, each with its rules.",
        **schema,
        "type": ["object", "null"],  # an empty file defines nothing
        "required": ["purposes"],
    }


def _test_input(catalogue: Mapping[str, Fact]) -> Schema:
    facts: dict[str, Schema] = {
        name: _described(f"{fact.type} from {fact.source}", {}) for name, fact in catalogue.items()
    }
    subject: Schema = {
        "type": ["object", "null"],
        # Typed in a description only: a test may feed a value of another type on purpose.
        "properties": {name: _described(f"{t} in the token", {}) for name, t in SUBJECT_FIELDS.items()},
        "additionalProperties": False,
    }
    roots: dict[str, Schema] = {
        "context": _described("The request's context, checked against the purpose's context schema.",
                              {"type": ["object", "null"]}),
        "subject": _described("The caller's token.", subject),
        "consent": _described("Consents by purpose name: `{marketing: true}`.", {"type": ["object", "null"]}),
    }
    return _described(
        "The facts at the top level (the purpose's evidence, or any fact the gateway provides), "
        "and `context`, `subject`, `consent` as maps.",
        {"type": ["object", "null"], "properties": {**facts, **{name: roots[name] for name in INPUT_ROOTS}}},
    )


def _test_file(catalogue: Mapping[str, Fact]) -> Schema:
    expect: Schema = {
        "type": "object",
        "description": "The decision expected: status, and reason and conditions when given.",
        "properties": {
            "status": _OUTCOME,
            "reason": _described("The reason expected (not checked when absent).", {"type": ["string", "null"]}),
            "conditions": _described(
                "The conditions expected, in order (not checked when absent).",
                {"type": ["array", "null"], "items": {"type": "string"}},
            ),
        },
        "required": ["status"],
        "additionalProperties": False,
    }
    case: Schema = {
        "type": "object",
        "description": "One test case: the input facts and the decision expected.",
        "properties": {
            "name": _described("What the case checks; `idgw policy test -k` selects by it.",
                               {"type": "string", "minLength": 1}),
            "purpose": _described("The purpose to decide, when not the file's.", _TEXT),
            "input": _test_input(catalogue),
            "expect": expect,
        },
        "required": ["name", "expect"],
        "additionalProperties": False,
    }
    return {
        "title": "ID Gateway policy test file",
        "description": "A test file (`*_test.yaml`, or any `*.yaml` under `tests/`): cases of one or more purposes.",
        "type": "object",
        "properties": {
            "purpose": _described("The purpose the cases decide (a case may name its own).",
                                  {"type": ["string", "null"]}),
            "cases": _described("The test cases.", {"type": "array", "minItems": 1, "items": case}),
        },
        "required": ["cases"],
        "additionalProperties": False,
        # Without a purpose for the whole file, each case names its own.
        "if": {"not": {"required": ["purpose"], "properties": {"purpose": {"type": "string"}}}},
        "then": {"properties": {"cases": {"items": {"required": ["purpose"]}}}},
    }


def policy_schema(catalogue: Mapping[str, Fact] | None = None) -> Schema:
    """The JSON Schema of policy and test files; with the gateway's fact `catalogue`, the
    expected values of its facts are typed as the loader types them (E206)."""
    facts = dict(catalogue or {})
    return {
        "$schema": DIALECT,
        "title": "ID Gateway policy and test files",
        "description": (
            "A policy file (`purposes`) or, when it has `cases` or `purpose` at the top, a test file. "
            "`idgw policy lint` checks everything this schema checks, and the rule language too."
        ),
        "if": {"type": "object", "anyOf": [{"required": ["cases"]}, {"required": ["purpose"]}]},
        "then": {"$ref": "#/$defs/test_file"},
        "else": {"$ref": "#/$defs/policy_file"},
        "$defs": {
            "policy_file": _policy_file(),
            "purpose": _purpose(facts),
            "context_field": _context_field(),
            "rule": _rule(),
            "test_file": _test_file(facts),
        },
    }


__all__ = ["DIALECT", "policy_schema"]
