"""Registry clients: the interface a real HTTP client would implement, and the mocks.

    class CitizenRegistry(Protocol):   async lookup(national_id, now) -> CitizenRecord
    class SanctionsRegistry(Protocol): async lookup(national_id, now) -> SanctionsRecord

A client raises `RegistryError` when the registry answers with an error; the service
bounds every call with its own timeout, so clients need not.

The mocks answer deterministically from the national id (docs/registry.md lists the
test ids), after `latency_ms` of simulated network time, and fail with probability
`failure_rate` (from a seeded generator, so a fault test is repeatable). `calls`
counts the lookups that reached the client, cache hits excluded.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from datetime import date, datetime
from typing import Protocol

from server.registry.records import CitizenRecord, SanctionsRecord, years_between

SANCTIONS_SOURCE = "mock-sanctions-list"

#: The documented test ids (docs/registry.md). Every other id gets a record derived
#: from its SHA-256, stable across runs and machines.
VALID_ADULT = "123456789"
SANCTIONED = "987654321"
UNDERAGE = "111111111"
INVALID_CITIZEN = "000000000"
PEP = "555555555"

_NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
          "Donald Knuth", "Margaret Hamilton", "John Backus")
_STREETS = ("Main Street", "High Street", "Station Road", "Church Lane", "Park Avenue", "Mill Road")


class RegistryError(Exception):
    """The registry answered, but with an error."""


class CitizenRegistry(Protocol):
    async def lookup(self, national_id: str, now: datetime) -> CitizenRecord: ...


class SanctionsRegistry(Protocol):
    async def lookup(self, national_id: str, now: datetime) -> SanctionsRecord: ...


def _digest(national_id: str) -> bytes:
    return hashlib.sha256(national_id.encode("ascii")).digest()


def _years_before(today: date, years: int, digest: bytes) -> date:
    """A birthday `years` (plus up to ~11 months) before `today`."""
    born_year = today.year - years - 1
    return date(born_year, 1 + digest[2] % 12, 1 + digest[3] % 28)


def citizen_facts(national_id: str, today: date) -> tuple[bool, date]:
    """(valid, date of birth) of the mock record of `national_id`."""
    digest = _digest(national_id)
    if national_id == INVALID_CITIZEN:
        return False, _years_before(today, 40, digest)
    if national_id == UNDERAGE:
        return True, _years_before(today, 15, digest)
    if national_id in (VALID_ADULT, SANCTIONED, PEP):
        return True, _years_before(today, 30 + digest[4] % 30, digest)
    # Other ids: 1 in 10 invalid, ages 10 to 89 (so about 1 in 10 under 18).
    return digest[0] % 10 != 0, _years_before(today, 10 + digest[1] % 80, digest)


def sanctions_facts(national_id: str) -> tuple[bool, bool]:
    """(listed, pep) of the mock record of `national_id`."""
    if national_id == SANCTIONED:
        return True, False
    if national_id == PEP:
        return False, True
    if national_id in (VALID_ADULT, UNDERAGE, INVALID_CITIZEN):
        return False, False
    digest = _digest(national_id)
    return digest[5] % 50 == 0, digest[6] % 25 == 0


class MockClient:
    """Latency, injected failures and the call counter shared by both mocks."""

    registry_type = "mock"

    def __init__(self, latency_ms: float = 0, failure_rate: float = 0.0, seed: int = 0) -> None:
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.calls = 0
        self._random = random.Random(seed)

    async def _answer(self) -> None:
        self.calls += 1
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.failure_rate > 0 and self._random.random() < self.failure_rate:
            raise RegistryError(f"the {self.registry_type} registry failed (injected failure)")


class MockCitizenRegistry(MockClient):
    registry_type = "citizen"

    async def lookup(self, national_id: str, now: datetime) -> CitizenRecord:
        await self._answer()
        digest = _digest(national_id)
        valid, born = citizen_facts(national_id, now.date())
        return CitizenRecord(
            national_id=national_id,
            valid=valid,
            date_of_birth=born,
            name=_NAMES[digest[7] % len(_NAMES)],
            address=f"{1 + digest[8] % 200} {_STREETS[digest[9] % len(_STREETS)]}",
            checked_at=now,
            is_over_18=years_between(born, now.date()) >= 18,
        )


class MockSanctionsRegistry(MockClient):
    registry_type = "sanctions"

    async def lookup(self, national_id: str, now: datetime) -> SanctionsRecord:
        await self._answer()
        listed, pep = sanctions_facts(national_id)
        return SanctionsRecord(national_id=national_id, listed=listed, pep=pep, source=SANCTIONS_SOURCE,
                               checked_at=now)


__all__ = [
    "INVALID_CITIZEN",
    "PEP",
    "SANCTIONED",
    "SANCTIONS_SOURCE",
    "UNDERAGE",
    "VALID_ADULT",
    "CitizenRegistry",
    "MockCitizenRegistry",
    "MockClient",
    "MockSanctionsRegistry",
    "RegistryError",
    "SanctionsRegistry",
    "citizen_facts",
    "sanctions_facts",
]
