"""The rule language: parse -> check -> compile.

    node = dsl.parse(dsl.SourceText('is_pep AND context.amount > 10000'))
    checked = dsl.check(node, source, scope)
    program = dsl.compile_program([checked], outcomes=[...], default=...)

Large rule lists go through `Shapes.prepare`, which checks each *shape* of condition
once (`dsl.conditions`), and the compiler may index them (`dsl.index`).

Errors::

    PolicyError            every diagnostic of a failed load (engine raises it too)
    ParseFailure           one expression did not parse; `.diagnostic` says why
"""

from __future__ import annotations

from dsl.ast import Expr, Span
from dsl.checker import Checked, FactBinding, Scope, check
from dsl.compiler import (
    EvidenceCheck,
    Program,
    Required,
    Tracer,
    Verdicts,
    compile_expression,
    compile_program,
    refuses_every_mistyped,
)
from dsl.conditions import Condition, Shape, Shapes, as_condition
from dsl.diagnostics import CODES, Diagnostic, PolicyError, Position, SourceText, scalar_positions
from dsl.functions import FUNCTIONS, QUANTIFIERS, Function
from dsl.parser import ParseFailure, parse
from dsl.runtime import UNDEFINED, Clock, Recorder, type_name, utc_now
from dsl.types import ROOTS, SCHEMA_TYPES, SUBJECT_FIELDS, Fact, Type

__all__ = [
    "CODES",
    "FUNCTIONS",
    "QUANTIFIERS",
    "ROOTS",
    "SCHEMA_TYPES",
    "SUBJECT_FIELDS",
    "UNDEFINED",
    "Checked",
    "Clock",
    "Condition",
    "Diagnostic",
    "EvidenceCheck",
    "Expr",
    "Fact",
    "FactBinding",
    "Function",
    "ParseFailure",
    "PolicyError",
    "Position",
    "Program",
    "Recorder",
    "Required",
    "Scope",
    "Shape",
    "Shapes",
    "SourceText",
    "Span",
    "Tracer",
    "Type",
    "Verdicts",
    "as_condition",
    "check",
    "compile_expression",
    "compile_program",
    "parse",
    "refuses_every_mistyped",
    "scalar_positions",
    "type_name",
    "utc_now",
]
