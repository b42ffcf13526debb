"""Access tokens signed and verified per second, RS256 (2048-bit) vs ES256 (P-256).

Both directions go through the gateway's own code on one core:

- sign: `TokenMinter.access_claims` + `tokens.sign` (PyJWT over `cryptography`), i.e.
  what `/auth/token` pays per access token (an ID token costs the same again);
- verify: `tokens.verify_token` with the key already looked up, i.e. the signature and
  claim checks of `require_principal` on every protected call, without the
  (in-memory) revocation lookup.

Each figure is the best of ``--repeat`` runs (default 3) of ``--tokens`` operations.

    .venv/bin/python benchmarks/bench_tokens.py
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime

import cryptography
import jwt

from server.auth.keys import LoadedKey, new_signing_key
from server.auth.tokens import ACCESS_TOKEN_TYP, TokenMinter, TokenRules, sign, verify_token
from stores import User

ISSUER = "https://gateway.example"


class OneKey:
    def __init__(self, key: LoadedKey) -> None:
        self.key = key

    async def find(self, kid: str) -> LoadedKey | None:
        return self.key if kid == self.key.kid else None


def best_rate(run: Callable[[], None], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def measure(alg: str, count: int, repeat: int) -> tuple[float, float, int]:
    now = datetime.now(UTC)
    key = LoadedKey.parse(new_signing_key(alg, now))
    user = User(id="usr_0123456789abcdef01234567", email="ada@example.com", created_at=now, updated_at=now)
    minter = TokenMinter(ISSUER, ISSUER, regulated=False)
    rules = TokenRules(issuer=ISSUER, audience=ISSUER, algorithms=frozenset({alg}),
                       required_claims=("iss", "sub", "aud", "exp", "iat", "jti", "sid", "client_id"),
                       typ=ACCESS_TOKEN_TYP)

    def mint() -> str:
        return sign(minter.access_claims(user, "ses_abc", "demo-client", ("openid", "profile"), now), key,
                    ACCESS_TOKEN_TYP)

    tokens = [mint() for _ in range(count)]
    keys = OneKey(key)

    def sign_all() -> None:
        for _ in range(count):
            mint()

    def verify_all() -> None:
        async def run() -> None:
            for token in tokens:
                await verify_token(token, keys, rules, now)

        asyncio.run(run())

    return best_rate(sign_all, count, repeat), best_rate(verify_all, count, repeat), len(tokens[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="operations per run (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (default 3)")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, "
          f"{platform.machine()}")
    print("| algorithm | signed/s | verified/s | access token bytes |")
    print("|---|---:|---:|---:|")
    for alg in ("RS256", "ES256"):
        signed, verified, size = measure(alg, args.tokens, args.repeat)
        print(f"| {alg} | {signed:,.0f} | {verified:,.0f} | {size} |")


if __name__ == "__main__":
    main()
