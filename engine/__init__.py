"""The decision engine: load a policy directory once, decide many times.

    import engine
    policies = engine.load("policies")          # raises engine.PolicyError
    d = policies.decide("age_verification", facts, explain=True)
    d.status, d.reason, d.conditions, d.purpose, d.revision, d.explanation

Errors::

    PolicyError        the policy set has errors; `.diagnostics` lists every one
    UnknownPurpose     `decide()` was asked about a purpose the set does not define

The engine never imports `server` or `stores`: it is a plain library.
"""

from __future__ import annotations

from dsl import Diagnostic, PolicyError
from engine.loader import LoadResult, build, discover, load
from engine.policyset import Decision, PolicySet, UnknownPurpose
from engine.purpose import Purpose, Rule

__all__ = [
    "Decision",
    "Diagnostic",
    "LoadResult",
    "PolicyError",
    "PolicySet",
    "Purpose",
    "Rule",
    "UnknownPurpose",
    "build",
    "discover",
    "load",
]
