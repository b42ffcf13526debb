"""What the registries answer: one citizen record and one sanctions record per national id.

Plain frozen records with their JSON form, which is also their cache form. Regulated
mode (`IDGW_REGULATED_MODE=true`) keeps only what decisions need: `minimised()` drops
the name, date of birth and address after `is_over_18` has been derived from the date
of birth, so neither the answers nor the cache ever hold them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from engine.clock import utc_text
from server.errors import ApiError

NATIONAL_ID_PATTERN = r"^[A-Z0-9]{6,20}$"
_NATIONAL_ID = re.compile(NATIONAL_ID_PATTERN)


def check_national_id(national_id: str) -> str:
    """The id if it matches `^[A-Z0-9]{6,20}$`, else a 400 (never echoing the value)."""
    if not isinstance(national_id, str) or _NATIONAL_ID.fullmatch(national_id) is None:
        raise ApiError(400, "national_id: expected 6 to 20 characters of A-Z and 0-9",
                       error="invalid_national_id")
    return national_id


def years_between(born: date, on: date) -> int:
    """Completed years of age on `on` (a 29 February birthday counts on 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@dataclass(frozen=True, slots=True)
class CitizenRecord:
    national_id: str
    valid: bool
    date_of_birth: date | None
    name: str | None
    address: str | None
    checked_at: datetime
    is_over_18: bool

    def minimised(self) -> CitizenRecord:
        """Without name, date of birth and address (regulated mode)."""
        return replace(self, date_of_birth=None, name=None, address=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "national_id": self.national_id,
            "valid": self.valid,
            "date_of_birth": self.date_of_birth.isoformat() if self.date_of_birth else None,
            "name": self.name,
            "address": self.address,
            "is_over_18": self.is_over_18,
            "checked_at": utc_text(self.checked_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CitizenRecord:
        born = data.get("date_of_birth")
        return cls(
            national_id=data["national_id"], valid=bool(data["valid"]),
            date_of_birth=date.fromisoformat(born) if born else None,
            name=data.get("name"), address=data.get("address"),
            checked_at=datetime.fromisoformat(data["checked_at"]), is_over_18=bool(data["is_over_18"]),
        )


@dataclass(frozen=True, slots=True)
class SanctionsRecord:
    national_id: str
    listed: bool
    pep: bool
    source: str
    checked_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "national_id": self.national_id,
            "listed": self.listed,
            "pep": self.pep,
            "source": self.source,
            "checked_at": utc_text(self.checked_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SanctionsRecord:
        return cls(
            national_id=data["national_id"], listed=bool(data["listed"]), pep=bool(data["pep"]),
            source=data["source"], checked_at=datetime.fromisoformat(data["checked_at"]),
        )


__all__ = [
    "NATIONAL_ID_PATTERN",
    "CitizenRecord",
    "SanctionsRecord",
    "check_national_id",
    "years_between",
]
