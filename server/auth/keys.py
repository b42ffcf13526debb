"""Signing keys: generation, RFC 7638 key ids, the JWKS, rotation.

Keys live in the `signing_keys` table of the configured database, so every worker and
every instance sharing the database signs and verifies with the same keys, and a
restart keeps issued tokens valid. The first start generates a key (RSA 2048 for RS256,
P-256 for ES256, by `IDGW_SIGNING_ALG`); `idgw keys rotate` adds a new one and retires
the others: a retired key stops signing at once and stays in the JWKS until every token
it can have signed has expired (`RETIRED_KEY_GRACE`), then it is dropped and purged.

`KeyRing` is the in-process view: the published keys, parsed once, re-read from the
store every `refresh_seconds` (so a rotation made by the CLI or another worker is seen
within that bound) and at once on an unknown `kid`, at most once per
`unknown_kid_interval` (1 s) for unknown ids. While the store cannot be read, the keys
already loaded keep verifying and the read is retried every `KEY_RETRY_SECONDS`: a
database outage must not stop the calls that need no database (the data API).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from server.auth.lifetimes import ACCESS_TOKEN_TTL, LEEWAY
from server.json_codec import hash_input
from stores import SigningKey, SigningKeyStore, StoreError

Clock = Callable[[], datetime]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
RSA_KEY_BITS = 2048

#: How long the ring trusts its copy of the key table.
KEY_REFRESH_SECONDS = 30.0
#: While the key table cannot be read, how often the ring tries again.
KEY_RETRY_SECONDS = 5.0
#: A retired key stays published this long: the longest token lifetime, plus the time
#: other workers may keep signing with it before they re-read the table, plus leeway.
RETIRED_KEY_GRACE = ACCESS_TOKEN_TTL + timedelta(seconds=KEY_REFRESH_SECONDS) + LEEWAY


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported signing algorithm {alg!r}; expected one of {', '.join(SUPPORTED_ALGORITHMS)}")


def public_jwk_members(public_key: PublicKey) -> dict[str, str]:
    """The key's required JWK members (RFC 7638 section 3.2), from PyJWT's encoder."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        return {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    return {"kty": "EC", "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]}


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members as compact JSON with sorted keys,
    base64url without padding."""
    digest = hashlib.sha256(hash_input(dict(sorted(members.items())))).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_signing_key(alg: str, now: datetime) -> SigningKey:
    """A fresh key as the store holds it: PKCS#8 PEM and the public JWK with its `kid`."""
    private_key = generate_private_key(alg)
    members = public_jwk_members(private_key.public_key())
    kid = jwk_thumbprint(members)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return SigningKey(
        kid=kid,
        alg=alg,
        private_key_pem=pem,
        public_jwk={**members, "kid": kid, "use": "sig", "alg": alg},
        created_at=now,
    )


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A stored key parsed for use: signs when it is the ring's current key."""

    kid: str
    alg: str
    private_key: PrivateKey
    public_key: PublicKey
    public_jwk: dict[str, Any]
    record: SigningKey

    @classmethod
    def parse(cls, record: SigningKey) -> LoadedKey:
        private_key = serialization.load_pem_private_key(record.private_key_pem.encode("ascii"), password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"signing key {record.kid!r} is neither RSA nor EC")
        return cls(record.kid, record.alg, private_key, private_key.public_key(), dict(record.public_jwk), record)


class KeyRing:
    """The keys of one database as this process sees them."""

    def __init__(
        self,
        store: SigningKeyStore,
        alg: str,
        clock: Clock,
        *,
        refresh_seconds: float = KEY_REFRESH_SECONDS,
        unknown_kid_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        self.store = store
        self.alg = alg
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.unknown_kid_interval = unknown_kid_interval
        self._monotonic = monotonic
        self._published: dict[str, LoadedKey] = {}
        self._current: LoadedKey | None = None
        self._loaded_at = float("-inf")
        self._failed_at = float("-inf")
        self._unknown_reloaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the keys; generate the first one, or rotate when `IDGW_SIGNING_ALG` changed."""
        now = self.clock()
        await self.store.purge_expired(now)
        current = await self.store.current()
        if current is None or current.alg != self.alg:
            await self.rotate()
        else:
            await self._reload()

    async def rotate(self) -> LoadedKey:
        """Add a new signing key and retire every other unretired one."""
        now = self.clock()
        added = await self.store.add(new_signing_key(self.alg, now))
        for key in await self.store.list_keys():
            if key.retired_at is None and key.kid != added.kid:
                await self.store.retire(key.kid, retired_at=now, not_after=now + RETIRED_KEY_GRACE)
        await self.store.purge_expired(now)
        await self._reload()
        return self._published[added.kid]

    async def signing_key(self) -> LoadedKey:
        await self._refresh_if_stale()
        if self._current is None:
            raise LookupError("no signing key: the key ring has not been started")
        return self._current

    async def find(self, kid: str) -> LoadedKey | None:
        """The published key with this `kid`, re-reading the table once for an unknown one."""
        await self._refresh_if_stale()
        key = self._published.get(kid)
        if key is None and self._monotonic() - self._unknown_reloaded_at >= self.unknown_kid_interval:
            self._unknown_reloaded_at = self._monotonic()
            await self._reload()
            key = self._published.get(kid)
        if key is not None and key.record.not_after is not None and key.record.not_after <= self.clock():
            return None
        return key

    async def jwks(self) -> dict[str, Any]:
        """The JWK Set of the published keys, newest first."""
        await self._refresh_if_stale()
        now = self.clock()
        keys = [
            k.public_jwk for k in self._published.values()
            if k.record.not_after is None or k.record.not_after > now
        ]
        return {"keys": keys}

    async def _refresh_if_stale(self) -> None:
        # One refresh at a time: requests arriving meanwhile use the keys they find, rather
        # than queueing behind it (each waiting for the database when it is down).
        now = self._monotonic()
        if (now - self._loaded_at < self.refresh_seconds or now - self._failed_at < KEY_RETRY_SECONDS
                or self._lock.locked()):
            return
        try:
            await self._reload()
        except StoreError:
            if self._current is None:
                raise
            self._failed_at = self._monotonic()  # keep the copy: a key leaves it only at its not_after

    async def _reload(self) -> None:
        async with self._lock:
            records = await self.store.list_keys(published_at=self.clock())  # newest first
            published: dict[str, LoadedKey] = {}
            for record in records:
                known = self._published.get(record.kid)
                # Parse each key once; keep the record fresh (retirement sets `not_after`).
                published[record.kid] = LoadedKey.parse(record) if known is None else replace(known, record=record)
            self._published = published
            self._current = next((published[r.kid] for r in records if r.retired_at is None), None)
            self._loaded_at = self._monotonic()


__all__ = [
    "KEY_REFRESH_SECONDS",
    "KEY_RETRY_SECONDS",
    "RETIRED_KEY_GRACE",
    "SUPPORTED_ALGORITHMS",
    "KeyRing",
    "LoadedKey",
    "generate_private_key",
    "jwk_thumbprint",
    "new_signing_key",
    "public_jwk_members",
]
