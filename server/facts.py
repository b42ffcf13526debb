"""The facts the gateway provides: the catalogue policies are checked against.

Each fact has the type its provider gives it and says where it comes from. The providers
in `server/decisions/evidence.py` gather exactly these facts (grouped as below), the
reloader and the `idgw policy` commands give this catalogue to the engine, and the
engine's checker types undeclared uses (W303) and foreign evidence (W306) against it.
A fact named nowhere here only the data API can supply. `consent.<purpose>` facts
(booleans, from the consent records) and `subject.*` (the caller's token) are provided
for any purpose and are not listed.

This module imports nothing of the server, so `idgw policy ...` stays light.
"""

from __future__ import annotations

from dsl import Fact
from dsl.types import BOOL, LIST_OF_STRINGS

#: From the citizen registry (need `context.national_id`).
CITIZEN_FACTS = (
    Fact("citizen_valid", BOOL, "citizen registry (needs context.national_id)"),
    Fact("is_over_18", BOOL, "derived from the citizen record's date of birth"),
)
#: From the sanctions registry (need `context.national_id`).
SANCTIONS_FACTS = (
    Fact("sanctions_listed", BOOL, "sanctions registry (needs context.national_id)"),
    Fact("is_pep", BOOL, "sanctions registry"),
)
#: From the credential store.
CREDENTIAL_FACTS = (
    Fact("has_credential", BOOL, "subject holds an unrevoked AgeOver18 credential"),
    Fact("credentials", LIST_OF_STRINGS, "types of unrevoked credentials the subject holds"),
)

CATALOGUE: dict[str, Fact] = {fact.name: fact for fact in (*CITIZEN_FACTS, *SANCTIONS_FACTS, *CREDENTIAL_FACTS)}

__all__ = ["CATALOGUE", "CITIZEN_FACTS", "CREDENTIAL_FACTS", "SANCTIONS_FACTS"]
