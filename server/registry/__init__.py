"""Registries: citizen and sanctions lookups behind an interface a real HTTP client could
implement, with deterministic mocks, a five-minute cache (memory or Redis), timeouts,
metrics and regulated-mode minimisation (docs/registry.md).

    routes                           POST /registry/citizen, POST /registry/sanctions
    RegistryService                  made by create_app as `app.state.registry`
    CitizenRecord, SanctionsRecord   what lookups return
    RegistryUnavailable              a 504 (timeout) or 502 (registry error) `registry_unavailable`

Modules, in the order a lookup takes: `records` (the records, national id validation),
`clients` (the interface and the mocks), `cache`, `service`, `routes` and `models` (HTTP).
"""

from __future__ import annotations

from server.registry.clients import (
    CitizenRegistry,
    MockCitizenRegistry,
    MockSanctionsRegistry,
    RegistryError,
    SanctionsRegistry,
)
from server.registry.records import CitizenRecord, SanctionsRecord, check_national_id
from server.registry.routes import routes
from server.registry.service import RegistryService, RegistryUnavailable

__all__ = [
    "CitizenRecord",
    "CitizenRegistry",
    "MockCitizenRegistry",
    "MockSanctionsRegistry",
    "RegistryError",
    "RegistryService",
    "RegistryUnavailable",
    "SanctionsRecord",
    "SanctionsRegistry",
    "check_national_id",
    "routes",
]
