"""engine.policy_schema: the JSON Schema of policy and test files agrees with the loader.

The schema accepts every file the loader accepts, refuses every file the loader refuses
for its structure, and names the rest (the rule language, checks across files) as
beyond it, file by file and one edit at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

import engine
from dsl import ROOTS, SCHEMA_TYPES, SUBJECT_FIELDS
from engine import testing
from engine.loader import FACT_NAME, IDENTIFIER, plain, role_of
from engine.policy_schema import policy_schema
from engine.purpose import OUTCOMES
from engine.schema import ContextFieldModel, PolicyFileModel, PurposeModel, RuleModel
from engine.yaml_source import read_yaml
from server.facts import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies"
BROKEN = ROOT / "tests" / "fixtures" / "broken"
SCHEMA = policy_schema(CATALOGUE)
DEFS = SCHEMA["$defs"]

#: Codes of a problem with a file's structure: its keys, the kind of their values, the
#: outcomes, the required keys. The schema must refuse a file the loader refuses for one.
STRUCTURAL = {"E002", "E201", "E202", "E205", "E206", "E207", "E401"}


def validator(kind: str | None = None, draft7: bool = False) -> Draft202012Validator | Draft7Validator:
    """The whole document (it picks the kind by shape), or one kind (`policy`, `test`)
    as the loader picks it by path."""
    schema = SCHEMA if kind is None else {**SCHEMA, "if": True, "then": {"$ref": f"#/$defs/{kind}_file"}}
    return Draft7Validator(schema) if draft7 else Draft202012Validator(schema)


def schema_errors(value: Any, kind: str | None = None) -> list[str]:
    """What the schema finds wrong with `value`; the draft-07 reading must find the same."""
    found = sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator(kind).iter_errors(value))
    assert bool(found) == (not validator(kind, draft7=True).is_valid(value)), found
    return found


def document(path: Path) -> Any:
    """A file's content as the loader reads it (dates as text, keys as strings)."""
    doc = read_yaml(str(path), path.read_text(encoding="utf-8"))
    assert not doc.diagnostics, [d.render() for d in doc.diagnostics]
    return plain(doc.value)


def kind_of(path: Path, root: Path) -> str:
    role = role_of(path.relative_to(root))
    assert role in ("policy", "test"), path
    return role


# -- the schema itself -----------------------------------------------------------------
def test_it_is_a_2020_12_schema_that_draft_07_reads_the_same() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)
    Draft7Validator.check_schema(SCHEMA)
    keywords_after_draft_07 = {"dependentSchemas", "dependentRequired", "prefixItems", "unevaluatedProperties",
                               "unevaluatedItems", "$dynamicRef", "$anchor", "minContains", "maxContains"}
    assert not keywords_after_draft_07 & set(_keys(SCHEMA))


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            if key not in ("properties", "patternProperties", "$defs"):
                yield from _keys(value)
            else:
                for item in value.values():
                    yield from _keys(item)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def test_it_has_exactly_the_keys_the_loader_knows() -> None:
    def aliases(model: Any) -> list[str]:
        return sorted(field.alias or name for name, field in model.model_fields.items())

    assert sorted(DEFS["policy_file"]["properties"]) == aliases(PolicyFileModel)
    assert sorted(DEFS["purpose"]["properties"]) == aliases(PurposeModel)
    assert sorted(DEFS["rule"]["properties"]) == aliases(RuleModel)
    assert sorted(DEFS["context_field"]["properties"]) == aliases(ContextFieldModel)
    test_file = DEFS["test_file"]
    case = test_file["properties"]["cases"]["items"]
    assert list(test_file["properties"]) == list(testing._FILE_KEYS)
    assert list(case["properties"]) == list(testing._CASE_KEYS)
    assert list(case["properties"]["expect"]["properties"]) == list(testing._EXPECT_KEYS)
    inputs = case["properties"]["input"]["properties"]
    assert set(testing.INPUT_ROOTS) | set(CATALOGUE) == set(inputs)
    assert list(inputs["subject"]["properties"]) == list(SUBJECT_FIELDS)
    for properties in (DEFS[name]["properties"] for name in ("policy_file", "purpose", "rule", "context_field")):
        assert all(isinstance(p, dict) and p.get("description") for p in properties.values())


def test_its_values_are_the_loaders() -> None:
    rule = DEFS["rule"]["properties"]
    assert rule["then"]["enum"] == rule["else"]["enum"] == list(OUTCOMES)
    expect = DEFS["test_file"]["properties"]["cases"]["items"]["properties"]["expect"]
    assert expect["properties"]["status"]["enum"] == list(OUTCOMES)
    assert DEFS["context_field"]["properties"]["type"]["enum"] == sorted(SCHEMA_TYPES)
    assert DEFS["purpose"]["properties"]["context"]["propertyNames"]["pattern"] == IDENTIFIER.pattern
    fact_name, expected = DEFS["purpose"]["properties"]["evidence"]["items"]["anyOf"]
    assert fact_name["pattern"] == expected["propertyNames"]["pattern"] == FACT_NAME.pattern
    assert fact_name["not"]["enum"] == list(ROOTS)
    assert fact_name["examples"] == sorted(CATALOGUE)
    assert expected["properties"]["credentials"] == {
        "description": expected["properties"]["credentials"]["description"],
        "type": "array", "items": {"type": "string"},
    }


def test_the_command_prints_it_with_the_gateways_facts() -> None:
    from tests.engine_cli.policy_cli_helpers import idgw

    result = idgw("policy", "schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == SCHEMA
    assert policy_schema() != SCHEMA  # without a catalogue, expected values are untyped
    assert "examples" not in policy_schema()["$defs"]["purpose"]["properties"]["evidence"]["items"]["anyOf"][0]


# -- files the loader accepts ----------------------------------------------------------
ACCEPTED = [
    *sorted(p.relative_to(ROOT) for p in SHIPPED.rglob("*.yaml")),
    *(Path("tests/fixtures/broken") / name for name in (
        "unformatted/policy.yaml", "warnings/policy.yaml", "duplicate_purpose/a.yaml", "duplicate_purpose/b.yaml",
        "test_errors/policy.yaml", "test_errors/failing_test.yaml", "test_errors/tests/extra.yaml",
    )),
]


@pytest.mark.parametrize("path", ACCEPTED, ids=str)
def test_every_file_the_loader_accepts_validates(path: Path) -> None:
    directory = ROOT / path.parent if path.parent.name != "tests" else ROOT / path.parent.parent
    kind = kind_of(ROOT / path, directory)
    if kind == "test":
        _, diagnostics = testing.read_test_file(ROOT / path, engine.load(directory, catalogue=CATALOGUE))
        assert diagnostics == []
    else:
        assert engine.build(ROOT / path, catalogue=CATALOGUE).errors == []
    value = document(ROOT / path)
    assert schema_errors(value, kind) == []
    assert schema_errors(value) == []  # the document picks the same kind by its shape
    other = "policy" if kind == "test" else "test"
    assert schema_errors(value, other) != []


def test_the_shipped_directory_has_policies_and_tests() -> None:
    kinds = [kind_of(ROOT / p, SHIPPED) for p in ACCEPTED if SHIPPED in (ROOT / p).parents]
    assert kinds.count("policy") >= 3 and kinds.count("test") >= 3


# -- files the loader refuses ----------------------------------------------------------
REFUSES = "the schema refuses it"

#: Each broken fixture (a purpose of a fixture file is checked on its own), the codes the
#: loader gives it, and whether the schema refuses it or why it cannot.
BROKEN_FIXTURES: list[tuple[str, str | None, set[str], str]] = [
    ("errors/policy.yaml", "syntax_error", {"E101"}, "the rule language"),
    ("errors/policy.yaml", "unknown_fact", {"E102"}, "the rule language"),
    ("errors/policy.yaml", "unknown_function", {"E103"}, "the rule language"),
    ("errors/policy.yaml", "wrong_arity", {"E104"}, "the rule language"),
    ("errors/policy.yaml", "type_mismatch", {"E105"}, "the rule language"),
    ("errors/policy.yaml", "invalid_outcome", {"E201"}, REFUSES),
    ("errors/policy.yaml", "missing_reason", {"E202"}, REFUSES),
    ("errors/policy.yaml", "after_else", {"E203"}, "a rule's place in the list"),
    ("errors/policy.yaml", "after_always_true", {"E203"}, "the rule language (an always-true condition)"),
    ("structure/policy.yaml", "unknown_key", {"E002"}, REFUSES),
    ("structure/policy.yaml", "if_and_else", {"E205"}, REFUSES),
    ("structure/policy.yaml", "bad_evidence", {"E206"}, REFUSES),
    ("structure/policy.yaml", "bad_context", {"E207"}, REFUSES),
    ("structure/policy.yaml", "too_deep", {"E106"}, "the rule language"),
    ("structure/policy.yaml", "bad_regex", {"E107"}, "the rule language"),
    ("structure/policy.yaml", "division_by_zero", {"E108"}, "the rule language"),
    ("test_errors/invalid_test.yaml", None, {"E401"}, REFUSES),
    ("test_errors/unknown_fact_test.yaml", None, {"E403"}, "the facts the purposes declare"),
    ("test_errors/unknown_purpose_test.yaml", None, {"E402"}, "the purposes of the directory"),
    ("yaml_error/duplicate_key.yaml", None, {"E003"}, "the YAML reader keeps one of the two values"),
]
#: Fixtures the schema never sees as a document, or that are not policy or test files.
NOT_DOCUMENTS = {
    "yaml_error/bad_indent.yaml": "E001: not YAML; the editor's YAML parser reports it",
    "structure/data/bad_json.json": "E208: a data document, whose content is free",
    "duplicate_purpose": "E204: each file is valid alone; the purpose is defined in two files",
    "warnings/data/unused_list.yaml": "W305: a data document, whose content is free",
}


def test_every_broken_fixture_is_listed() -> None:
    listed = {f for f, *_ in BROKEN_FIXTURES} | set(NOT_DOCUMENTS)
    names = {str(p.relative_to(BROKEN)) for p in BROKEN.rglob("*") if p.is_file()}
    accepted = {str(p.relative_to("tests/fixtures/broken")) for p in ACCEPTED if "broken" in p.parts}
    unlisted = {n for n in names - listed - accepted if not n.startswith("duplicate_purpose/")}
    assert unlisted == set()
    purposes = {
        purpose for f in ("errors/policy.yaml", "structure/policy.yaml")
        for purpose in document(BROKEN / f)["purposes"]
    }
    assert purposes == {purpose for _, purpose, *_ in BROKEN_FIXTURES if purpose is not None}


def loader_codes(value: Any, kind: str, tmp_path: Path) -> set[str]:
    """The codes of the errors the loader gives this document as a policy file, or as a
    test file of the shipped policies (or those of `test_errors` when it tests them)."""
    target = tmp_path / ("x_test.yaml" if kind == "test" else "x.yaml")
    target.write_text(json.dumps(value), encoding="utf-8")
    if kind == "test":
        tested = value.get("purpose") if isinstance(value, dict) else None
        policies = BROKEN / "test_errors" if tested in ("screening", "screenin") else SHIPPED
        _, diagnostics = testing.read_test_file(target, engine.load(policies, catalogue=CATALOGUE))
    else:
        diagnostics = engine.build(tmp_path, catalogue=CATALOGUE).diagnostics
    target.unlink()
    return {d.code for d in diagnostics if d.severity == "error"}


@pytest.mark.parametrize(("file", "purpose", "codes", "verdict"), BROKEN_FIXTURES,
                         ids=[f"{f}:{p}" if p else f for f, p, *_ in BROKEN_FIXTURES])
def test_each_broken_fixture(file: str, purpose: str | None, codes: set[str], verdict: str,
                             tmp_path: Path) -> None:
    path = BROKEN / file
    doc = read_yaml(str(path), path.read_text(encoding="utf-8"))
    value = plain(doc.value)
    if purpose is not None:
        value = {"purposes": {purpose: value["purposes"][purpose]}}
    kind = kind_of(path, path.parent)
    found = {d.code for d in doc.diagnostics} | loader_codes(value, kind, tmp_path)
    assert found == codes
    errors = schema_errors(value, kind)
    if verdict == REFUSES:
        assert errors and bool(codes & STRUCTURAL)
        assert schema_errors(value) == errors  # picked by shape, the same kind
    else:
        assert errors == [] and not codes & (STRUCTURAL - {"E206"}), verdict


#: The broken documents of the other tests (tests/engine/test_loader.py,
#: tests/engine_cli/test_policy_test.py), more of each code, and documents on the edge of
#: what the loader accepts: (kind, YAML, the loader's codes, whether the schema refuses it).
HEADER = "purposes:\n  p:\n    evidence: [is_pep]\n    rules:\n"
SCREENING = "purpose: screening\ncases:\n  - name: x\n"
INLINE: list[tuple[str, str, set[str], bool]] = [
    ("policy", HEADER + "      - if: is_pep\n        then: fail\n        reasn: r\n", {"E002"}, True),
    ("policy", HEADER + "      - if: is_pep\n        then: deny\n        reason: r\n", {"E201"}, True),
    ("policy", HEADER + "      - if: is_pep\n        then: fail\n", {"E202"}, True),
    ("policy", "purposes:\n  p:\n    descripton: x\n    rules: [{else: pass, reason: r}]\n", {"E002"}, True),
    ("policy", HEADER + "      - if: is_pep\n        then: [fail]\n        reason: r\n", {"E002"}, True),
    ("policy", HEADER + "      - if: {a: 1}\n        then: fail\n        reason: r\n", {"E002"}, True),
    ("policy", "purposes:\n  p:\n    rules: []\n", {"E002"}, True),
    ("policy", "purposes:\n  p:\n    evidence: [context]\n    rules: [{else: pass, reason: r}]\n", {"E206"}, True),
    ("policy", "purposes:\n  p:\n    evidence: [{a: 1, b: 2}]\n    rules: [{else: pass, reason: r}]\n", {"E206"},
     True),
    ("policy", "purposes:\n  p:\n    evidence: [is_pep: 'no']\n    rules: [{else: pass, reason: r}]\n", {"E206"},
     True),
    ("policy", "purposes:\n  p:\n    evidence: [consent.x: 1]\n    rules: [{else: pass, reason: r}]\n", {"E206"},
     True),
    ("policy", "purposes:\n  p:\n    evidence: [a, a: 1]\n    rules: [{else: pass, reason: r}]\n", {"E206"},
     False),  # the same fact in two forms
    ("policy", "purposes:\n  p:\n    context: {1x: {}}\n    rules: [{else: pass, reason: r}]\n", {"E207"}, True),
    ("policy", "purposes:\n  p:\n    context: {x: {pattern: '(a'}}\n    rules: [{else: pass, reason: r}]\n",
     {"E207"}, False),  # RE2 is the judge of a pattern
    ("policy", "purposes:\n  p:\n    context: {x: {max_length: -1}}\n    rules: [{else: pass, reason: r}]\n",
     {"E002"}, True),
    ("policy", "purposes: []\n", {"E002"}, True),
    ("policy", "purpose:\n  p:\n    rules: [{else: pass, reason: r}]\n", {"E002"}, True),
    ("policy", "purposes:\n  p:\n    rules: [{then: pass, reason: r}]\n", {"E205"}, True),
    ("policy", "purposes:\n  p:\n    rules: [{else: pass, then: fail, reason: r}]\n", {"E205"}, True),
    ("policy", "purposes:\n  p:\n    rules: [{if: 'true', reason: r}]\n", {"E201"}, True),
    ("policy", "purposes:\n  p:\n    rules: [{else: pass, reason: ''}]\n", {"E202"}, True),
    ("test", "", {"E401"}, True),
    ("test", "- just a list\n", {"E401"}, True),
    ("test", "purpose: screening\ncases: []\n", {"E401"}, True),
    ("test", SCREENING + "    inptu: {}\n    expect: {status: pass}\n", {"E401"}, True),
    ("test", SCREENING + "    input: [1]\n    expect: {status: pass}\n", {"E401"}, True),
    ("test", SCREENING + "    input: {subject: {sbu: a}}\n    expect: {status: pass}\n", {"E403"}, True),
    ("test", SCREENING + "    input: {context: 5}\n    expect: {status: pass}\n", {"E401"}, True),
    ("test", SCREENING + "    expect: {status: pass, reason: 5}\n", {"E401"}, True),
    ("test", SCREENING + "    expect: {status: pass, conditions: [1]}\n", {"E401"}, True),
    ("test", SCREENING + "    expect: {status: pass, why: x}\n", {"E401"}, True),
    ("test", "purpose: screening\ncases:\n  - name: ''\n    expect: {status: pass}\n", {"E401"}, True),
    ("test", "cases:\n  - name: x\n    expect: {status: pass}\n", {"E401"}, True),
    ("test", "cases:\n  - name: x\n    purpose: nope\n    expect: {status: pass}\n", {"E402"}, False),
    ("test", "purpose: 5\ncases:\n  - name: x\n    expect: {status: pass}\n", {"E401"}, True),
    # accepted, values of any type included: a test may feed a wrong one on purpose
    ("test", SCREENING + "    input: {subject: {scope: x}, sanctions_listed: 'no'}\n    expect: {status: fail}\n",
     set(), False),
    ("test", SCREENING + "    input:\n    expect: {status: fail, reason: null, conditions: null}\n", set(), False),
    ("policy", "purposes:\n  p:\n    rules: [{if: true, then: pass, reason: r}]\n", set(), False),
    ("policy", "purposes:\n  p:\n    context: {x: {description: null, pattern: null, enum: null}}\n"
     "    rules: [{else: pass, reason: r, description: null}]\n", set(), False),
    ("policy", "", set(), False),
]


@pytest.mark.parametrize(("kind", "text", "codes", "refused"), INLINE, ids=[t for _, t, *_ in INLINE])
def test_each_broken_document_of_the_other_tests(kind: str, text: str, codes: set[str], refused: bool,
                                                   tmp_path: Path) -> None:
    value = plain(read_yaml("x.yaml", text).value)
    assert loader_codes(value, kind, tmp_path) == codes
    errors = schema_errors(value, kind)
    assert bool(errors) == refused, errors
    if refused and text:
        assert schema_errors(value)  # picked by shape, refused too (`purpose:` reads as a test file)
    assert refused or not codes & (STRUCTURAL - {"E206", "E207"})


#: What the loader accepts by reading a value as another (pydantic's lax mode: text as a
#: boolean or a number, true as 1) or a key with no value as no key, and the schema refuses:
#: it asks for the value itself, and no key rather than an empty one.
STRICTER = [
    "purposes:\n  p:\n    context: {x: {required: 'yes'}}\n    rules: [{else: pass, reason: r}]\n",
    "purposes:\n  p:\n    context: {x: {sensitive: 'on'}}\n    rules: [{else: pass, reason: r}]\n",
    "purposes:\n  p:\n    context: {x: {minimum: '5'}}\n    rules: [{else: pass, reason: r}]\n",
    "purposes:\n  p:\n    context: {x: {max_length: true}}\n    rules: [{else: pass, reason: r}]\n",
    "purposes:\n  p:\n    rules: [{if: 'true', then: pass, else: null, reason: r}]\n",
    "purposes:\n  p:\n    rules: [{then: null, else: pass, reason: r}]\n",
]


@pytest.mark.parametrize("text", STRICTER)
def test_the_schema_asks_for_the_value_the_loader_would_convert(text: str, tmp_path: Path) -> None:
    value = plain(read_yaml("x.yaml", text).value)
    assert loader_codes(value, "policy", tmp_path) == set()
    assert schema_errors(value, "policy")


def test_an_empty_document_is_an_empty_policy_file_to_the_editor() -> None:
    # The loader knows an empty test file by its path; an editor sees only the document.
    assert schema_errors(None) == []
    assert schema_errors(None, "test") != []


# -- one edit at a time ----------------------------------------------------------------
JUNK: list[Any] = [None, "text", 7, True, [], {}]

#: Keys of a context field whose value `true` the loader accepts as the number 1 (pydantic's
#: lax mode) and the schema refuses: it asks for the number itself.
TRUE_AS_ONE = {"minimum", "maximum", "max_length"}


def edits(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every document one edit away: a key removed or added, a value replaced by junk."""
    if isinstance(value, dict):
        yield (*path, "zz_unknown"), {**value, "zz_unknown": 1}
        for key, item in value.items():
            yield (*path, key, "<removed>"), {k: v for k, v in value.items() if k != key}
            for junk in JUNK:
                if junk != item or type(junk) is not type(item):
                    yield (*path, key, junk), {**value, key: junk}
            for where, edited in edits(item, (*path, key)):
                yield where, {**value, key: edited}
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):  # the items of a list have one shape
            for junk in JUNK:
                yield (*path, i, junk), [*value[:i], junk, *value[i + 1:]]
            for where, edited in edits(item, (*path, i)):
                yield where, [*value[:i], edited, *value[i + 1:]]


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT) for p in SHIPPED.glob("*.yaml")), ids=str)
def test_one_edit_away_the_schema_and_the_loader_agree(path: Path, tmp_path: Path) -> None:
    kind = kind_of(ROOT / path, SHIPPED)
    checked = refused = 0
    for where, value in edits(document(ROOT / path)):
        codes = loader_codes(value, kind, tmp_path)
        errors = schema_errors(value, kind)
        checked += 1
        refused += bool(errors)
        if len(where) > 1 and where[-2] in TRUE_AS_ONE and where[-1] is True:
            assert not codes and errors, where
        elif not codes:
            assert errors == [], (where, errors)
        elif codes & STRUCTURAL:
            assert errors, (where, codes)
    assert checked > 100 and refused > checked // 3
