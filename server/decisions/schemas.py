"""The decision endpoints as the live policy set shapes them, for the OpenAPI document.

Each purpose declares its facts (typed by the gateway's catalogue, `server/facts.py`, or
by an expected value) and its `context` schema; this module renders them as JSON Schema
so that a client gets a typed contract per purpose:

    POST /v1/data/{purpose}     one path per purpose, `/v1/data/age_verification`
                                (operationId `decide_data_age_verification`), whose body
                                types the declared facts and the purpose's context; the
                                templated path is left out, since no schema can tie its
                                body to the purpose its path names (the server answers
                                it all the same, and a purpose a reload adds appears in
                                the document rebuilt for the new revision)
    POST /decision/evaluate     its body is one of the purposes' bodies, told apart by
                                `purpose`, each with that purpose's context

The schemas state what the handlers enforce, no more: a declared fact of another type
is a 400 `invalid_input` (`service.check_evidence`), a context outside the schema a 400
`invalid_context`; a missing fact is not a request error (the decision fails closed)
and undeclared facts are accepted, so facts are typed but not required and `input`
takes further properties.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from dsl import UNDEFINED
from engine import PolicySet, Purpose
from engine.purpose import ContextField, type_schema
from server.json_codec import dumps

_SCHEMA_REF = "#/components/schemas/{name}"


def field_schema(field: ContextField) -> dict[str, Any]:
    """One context field as `engine.context` checks it."""
    schema: dict[str, Any] = {"type": "integer"} if field.integer else type_schema(field.type)
    if field.enum is not None:
        schema["enum"] = list(field.enum)
    if field.pattern is not None:
        schema["pattern"] = field.pattern
    if field.max_length is not None:
        schema["maxLength"] = field.max_length
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if field.sensitive:
        schema["description"] = "personal data: decision records keep a keyed hash of it, never the value"
    return schema


def context_schema(purpose: Purpose, title: str) -> dict[str, Any]:
    """The purpose's `context` object; without a schema, any object."""
    schema: dict[str, Any] = {"title": title, "type": "object"}
    if not purpose.context:
        schema["description"] = f"the request context; {purpose.name} declares no schema for it"
        return schema
    schema["description"] = f"the request context of {purpose.name}"
    schema["properties"] = {field.name: field_schema(field) for field in purpose.context}
    required = [field.name for field in purpose.context if field.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _needs_context(purpose: Purpose) -> bool:
    return any(field.required for field in purpose.context)


def input_schema(policy_set: PolicySet, purpose: Purpose, title: str, context_ref: str) -> dict[str, Any]:
    """The data API's `input` for `purpose`: its declared facts typed (nested ones such as
    `consent.registry_check` under their object), its context; other facts pass."""
    properties: dict[str, Any] = {}
    for spec in purpose.evidence:
        *parents, leaf = spec.name.split(".")
        level = properties
        for parent in parents:
            container = level.setdefault(parent, {"type": "object", "properties": {}})
            level = container["properties"]
        fact_schema = type_schema(spec.type)
        fact = policy_set.catalogue.get(spec.name)
        notes = [fact.source if fact is not None else "declared evidence"]
        if spec.expected is not UNDEFINED:
            notes.append(f"expected value {dumps(spec.expected).decode()}")
        fact_schema["description"] = "; ".join(notes) + " (missing: the decision fails closed, missing_evidence)"
        level[leaf] = fact_schema
    properties["context"] = {"$ref": context_ref}
    schema: dict[str, Any] = {
        "title": title,
        "description": f"the facts of {purpose.name} (declared ones typed; others are accepted and "
                       "reach the rules as data) and its request context",
        "type": "object",
        "properties": properties,
    }
    if _needs_context(purpose):
        schema["required"] = ["context"]
    return schema


def expand_data_api(
    policy_set: PolicySet, path: str, generic: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`POST /v1/data/{purpose}` as one path per purpose, each with its own body."""
    published: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for name, purpose in policy_set.purposes.items():
        camel = _camel(name)
        schemas[f"{camel}Context"] = context_schema(purpose, f"{camel}Context")
        schemas[f"{camel}Input"] = input_schema(
            policy_set, purpose, f"{camel}Input", _SCHEMA_REF.format(name=f"{camel}Context")
        )
        schemas[f"{camel}DataRequest"] = {
            "title": f"{camel}DataRequest",
            "description": f"`POST /v1/data/{name}` body",
            "type": "object",
            "properties": {"input": {"$ref": _SCHEMA_REF.format(name=f"{camel}Input")}},
            "required": ["input"],
            "additionalProperties": False,
        }
        operation = copy.deepcopy(generic)
        operation["operationId"] = f"{generic['operationId']}_{name}"
        operation["summary"] = f"Decide {name} on caller-supplied facts"
        operation["description"] = purpose.description or operation.get("description", "")
        operation["parameters"] = [p for p in operation["parameters"] if p["in"] != "path"]
        body = {"schema": {"$ref": _SCHEMA_REF.format(name=f"{camel}DataRequest")}}
        operation["requestBody"] = {"required": True, "content": {"application/json": body}}
        operation["responses"].pop("404", None)
        published[path.replace("{purpose}", name)] = operation
    return published or {path: generic}, schemas


def expand_evaluate(
    policy_set: PolicySet, path: str, generic: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`POST /decision/evaluate` with a body per purpose, told apart by `purpose`."""
    schemas: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    for name, purpose in policy_set.purposes.items():
        camel = _camel(name)
        context_ref = _SCHEMA_REF.format(name=f"{camel}Context")
        schemas[f"{camel}Context"] = context_schema(purpose, f"{camel}Context")
        schemas[f"{camel}EvaluateRequest"] = {
            "title": f"{camel}EvaluateRequest",
            "description": f"`POST /decision/evaluate` for {name}",
            "type": "object",
            "properties": {"purpose": {"type": "string", "const": name}, "context": {"$ref": context_ref}},
            "required": ["purpose", "context"] if _needs_context(purpose) else ["purpose"],
            "additionalProperties": False,
        }
        mapping[name] = _SCHEMA_REF.format(name=f"{camel}EvaluateRequest")
    if not mapping:
        return {path: generic}, {}
    operation = copy.deepcopy(generic)
    operation["requestBody"]["content"]["application/json"]["schema"] = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "purpose", "mapping": mapping},
    }
    return {path: operation}, schemas


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)



__all__ = ["context_schema", "expand_data_api", "expand_evaluate", "field_schema", "input_schema"]
