"""Policies from a signed bundle (`IDGW_POLICY_SOURCE`) instead of a watched directory.

    poll every IDGW_POLICY_POLL_S --> fetch (If-None-Match) --> open_bundle (signature,
    every file's hash, revision) --> extract --> LivePolicies.consider (load, own tests,
    atomic swap) --> keep the bytes in IDGW_POLICY_CACHE_DIR

The set goes live by the hot reload's own path (`LivePolicies.consider`): a bundle that
fails any check, from the download to its own test files, is rejected and logged, and
the last good set keeps serving. `GET /v1/policies` shows this source's status under
`source`, and every fetch is counted in `policy_bundle_fetches_total{result}`:

    updated       a new revision went live
    not_modified  304, the same bytes, or a bundle of the revision already serving
    rejected      the bundle failed a check (signature, hash, revision, load, tests)
    unreachable   no answer, or an HTTP status other than 200 and 304

The last good bundle (its bytes, its ETag) is kept on disk, under a name derived from the
source URL. At start the source is asked first (with that ETag); when it cannot answer,
or answers with a bundle that is rejected, the kept bundle is opened, checked and gated
again like a fetched one, so a replica restarted while the bundle server is down serves
the last set it had. Each worker process polls on its own; processes sharing the cache
directory replace its files atomically.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import structlog

from engine import PolicySet
from engine.bundle import MAX_UNPACKED_BYTES, Bundle, BundleError, open_bundle, public_key
from engine.clock import utc_now, utc_text
from server import json_codec
from server.metrics import POLICY_BUNDLE_FETCHES
from server.reload import LivePolicies, PolicyStartupError
from server.settings import PolicySourceSettings

logger = structlog.get_logger("idgw.policy_source")

FetchResult = Literal["updated", "not_modified", "rejected", "unreachable"]
FETCH_RESULTS: tuple[FetchResult, ...] = ("updated", "not_modified", "rejected", "unreachable")
#: Seconds to connect to the source and between bytes of its answer.
FETCH_TIMEOUT = 10.0


class SourceUnreachable(Exception):
    """The source gave no bundle: a network error or an unexpected HTTP status."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one request to the source gave: new bytes, or None when not modified."""

    content: bytes | None
    etag: str | None


def read_public_key(value: str | None) -> bytes | None:
    """The PEM of `IDGW_POLICY_PUBLIC_KEY` (a file's path, or the PEM text itself),
    checked to be a key bundles can be verified with; PolicyStartupError otherwise."""
    if value is None:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        pem = value.encode("ascii", "replace")
    else:
        try:
            pem = Path(value).read_bytes()
        except OSError as err:
            raise PolicyStartupError(f"IDGW_POLICY_PUBLIC_KEY: cannot read {value}: {err.strerror}") from None
    try:
        public_key(pem)
    except BundleError as err:
        raise PolicyStartupError(f"IDGW_POLICY_PUBLIC_KEY: {err}") from None
    return pem


class BundleSource:
    """One process's bundle source: fetches, checks, hands good sets to `live`, keeps the
    last good bundle, and remembers what happened for `status()`."""

    def __init__(self, settings: PolicySourceSettings, live: LivePolicies,
                 client: httpx.Client | None = None) -> None:
        if settings.source is None:
            raise ValueError("no IDGW_POLICY_SOURCE")
        self.url = settings.source
        self.poll_seconds = settings.poll_s
        self.live = live
        self.public_key_pem = read_public_key(settings.public_key)
        self.cache_dir = settings.cache_dir
        name = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._cached_bundle = self.cache_dir / f"{name}.tar.gz"
        self._cached_meta = self.cache_dir / f"{name}.json"
        self._client = client
        #: The ETag of the last bundle received (good or rejected): sent as If-None-Match,
        #: so a rejected bundle is not fetched and rejected again until it changes.
        self.etag: str | None = None
        self.served_from: Literal["source", "cache"] | None = None
        self.last_fetch: dict[str, Any] | None = None
        self.last_rejection: dict[str, Any] | None = None
        self.counts: dict[str, int] = dict.fromkeys(FETCH_RESULTS, 0)

    # -- start ------------------------------------------------------------------------
    def load_initial(self) -> PolicySet:
        """The first set: from the source, else from the kept bundle; PolicyStartupError
        (every reason) when neither gives a set that passes."""
        problems: list[str] = []
        kept = self._read_cache()
        at = utc_now()
        try:
            fetched = self._fetch(kept[1] if kept else None)
        except SourceUnreachable as err:
            self._record(at, "unreachable", error=str(err))
            problems.append(f"{self.url} is unreachable: {err}")
        else:
            if fetched.content is None and kept is not None:
                self.etag = kept[1]
                policy_set = self._start_with(kept[0], at, "not_modified", problems, "source")
                if policy_set is not None:
                    return policy_set
            elif fetched.content is not None:
                self.etag = fetched.etag
                policy_set = self._start_with(fetched.content, at, "updated", problems, "source")
                if policy_set is not None:
                    self._write_cache(fetched.content, fetched.etag)
                    return policy_set
        if kept is not None:
            policy_set = self._start_with(kept[0], utc_now(), None, problems, "cache")
            if policy_set is not None:
                logger.warning("policy_bundle_served_from_cache", url=self.url, revision=policy_set.revision,
                               cache=str(self._cached_bundle), problems=problems)
                return policy_set
        else:
            problems.append(f"no bundle is kept in {self.cache_dir}")
        raise PolicyStartupError(f"cannot serve the policies of {self.url}:\n  " + "\n  ".join(problems))

    def _start_with(self, content: bytes, at: datetime, result: FetchResult | None, problems: list[str],
                    origin: Literal["source", "cache"]) -> PolicySet | None:
        what = "the kept bundle" if origin == "cache" else "the bundle"
        try:
            bundle = self._open(content)
            with tempfile.TemporaryDirectory(dir=self._work_dir(), prefix=".extract-") as work:
                policy_set = self.live.load_initial(bundle.extract(Path(work) / "policies"))
        except (BundleError, PolicyStartupError) as err:
            reason = str(err)
            problems.append(f"{what} is refused: {reason}")
            if result is not None:
                self._reject(at, reason, None)
            return None
        self.served_from = origin
        if result is not None:
            self._record(at, result, revision=policy_set.revision)
        return policy_set

    # -- polling ----------------------------------------------------------------------
    def poll(self) -> FetchResult:
        """One fetch; a new bundle that passes every check goes live."""
        at = utc_now()
        try:
            fetched = self._fetch(self.etag)
        except SourceUnreachable as err:
            return self._record(at, "unreachable", error=str(err))
        if fetched.content is None:
            return self._record(at, "not_modified")
        self.etag = fetched.etag
        try:
            bundle = self._open(fetched.content)
        except BundleError as err:
            return self._reject(at, str(err), None)
        with tempfile.TemporaryDirectory(dir=self._work_dir(), prefix=".extract-") as work:
            try:
                directory = bundle.extract(Path(work) / "policies")
            except (BundleError, OSError) as err:
                return self._reject(at, f"cannot extract the bundle: {err}", bundle.revision)
            outcome = self.live.consider(directory)
        if outcome.result == "rejected":
            return self._reject(at, outcome.error or "rejected", outcome.revision)
        self.served_from = "source"
        self._write_cache(fetched.content, fetched.etag)
        if outcome.result == "unchanged":
            return self._record(at, "not_modified", revision=outcome.revision)
        logger.info("policy_bundle_updated", url=self.url, revision=outcome.revision, etag=fetched.etag)
        return self._record(at, "updated", revision=outcome.revision)

    def _open(self, content: bytes) -> Bundle:
        return open_bundle(content, self.public_key_pem, require_signature=self.public_key_pem is not None)

    def _fetch(self, etag: str | None) -> Fetched:
        scheme = urlsplit(self.url).scheme.lower()
        if scheme == "file":
            return self._fetch_file(etag)
        client = self._client
        if client is None:
            client = self._client = httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True)
        headers = {"If-None-Match": etag} if etag else {}
        try:
            with client.stream("GET", self.url, headers=headers) as response:
                if response.status_code == 304:
                    return Fetched(None, etag)
                if response.status_code != 200:
                    raise SourceUnreachable(f"HTTP {response.status_code} {response.reason_phrase}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_UNPACKED_BYTES:
                        raise SourceUnreachable(f"the answer is larger than {MAX_UNPACKED_BYTES:,} bytes")
                    chunks.append(chunk)
                return Fetched(b"".join(chunks), response.headers.get("etag"))
        except httpx.HTTPError as err:
            raise SourceUnreachable(f"{type(err).__name__}: {err}") from None

    def _fetch_file(self, etag: str | None) -> Fetched:
        path = Path(url2pathname(urlsplit(self.url).path))
        try:
            content = path.read_bytes()
        except OSError as err:
            raise SourceUnreachable(f"cannot read {path}: {err.strerror}") from None
        # A file has no ETag: its contents' hash serves as one.
        own = '"' + hashlib.sha256(content).hexdigest() + '"'
        return Fetched(None, etag) if own == etag else Fetched(content, own)

    # -- what happened ----------------------------------------------------------------
    def _record(self, at: datetime, result: FetchResult, *, error: str | None = None,
                revision: str | None = None) -> FetchResult:
        previous = self.last_fetch
        self.last_fetch = {"at": utc_text(at), "result": result, "error": error, "revision": revision}
        self.counts[result] += 1
        POLICY_BUNDLE_FETCHES.labels(result).inc()
        if result == "unreachable" and (previous is None or previous["error"] != error):
            logger.warning("policy_bundle_unreachable", url=self.url, error=error, serving=self._serving())
        elif result != "unreachable" and previous is not None and previous["result"] == "unreachable":
            logger.info("policy_bundle_reachable", url=self.url)
        return result

    def _reject(self, at: datetime, error: str, revision: str | None) -> FetchResult:
        self.last_rejection = {"at": utc_text(at), "error": error, "revision": revision, "etag": self.etag}
        logger.warning("policy_bundle_rejected", url=self.url, error=error, candidate_revision=revision,
                       etag=self.etag, serving=self._serving())
        return self._record(at, "rejected", error=error, revision=revision)

    def _serving(self) -> str | None:
        return self.live.current.revision if self.live.current is not None else None

    def status(self) -> dict[str, Any]:
        """What `GET /v1/policies` shows under `source`."""
        return {
            "url": self.url,
            "etag": self.etag,
            "poll_seconds": self.poll_seconds,
            "signature_required": self.public_key_pem is not None,
            "served_from": self.served_from,
            "last_fetch": self.last_fetch,
            "last_rejection": self.last_rejection,
            "fetches": dict(self.counts),
        }

    # -- the kept bundle --------------------------------------------------------------
    def _work_dir(self) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir

    def _read_cache(self) -> tuple[bytes, str | None] | None:
        """The kept bundle and its ETag (None when its record does not match its bytes)."""
        try:
            content = self._cached_bundle.read_bytes()
        except OSError:
            return None
        etag: str | None = None
        try:
            meta = json_codec.loads(self._cached_meta.read_bytes())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and meta.get("sha256") == hashlib.sha256(content).hexdigest():
            etag = meta.get("etag") if isinstance(meta.get("etag"), str) else None
        return content, etag

    def _write_cache(self, content: bytes, etag: str | None) -> None:
        """Keep the bundle, then its record (each replaced atomically, so a reader sees a
        whole file; a record that does not match the bytes only costs its ETag)."""
        meta = {"url": self.url, "etag": etag, "sha256": hashlib.sha256(content).hexdigest(),
                "saved_at": utc_text(utc_now())}
        try:
            _replace(self._cached_bundle, content, self._work_dir())
            _replace(self._cached_meta, json_codec.dumps(meta), self._work_dir())
        except OSError as err:
            logger.warning("policy_bundle_not_kept", cache=str(self.cache_dir), error=str(err))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _replace(target: Path, content: bytes, directory: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class BundlePoller:
    """Calls `source.poll()` every `poll_seconds` on a thread of its own (off the event
    loop, as the directory watcher's reloads are)."""

    def __init__(self, source: BundleSource) -> None:
        self.source = source
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idgw-policy-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = FETCH_TIMEOUT + 5) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.source.close()

    def _run(self) -> None:
        while not self._stopped.wait(self.source.poll_seconds):
            try:
                self.source.poll()
            except Exception:  # keep polling whatever happened
                logger.exception("policy_bundle_poll_crashed")


__all__ = [
    "FETCH_RESULTS",
    "BundlePoller",
    "BundleSource",
    "FetchResult",
    "SourceUnreachable",
    "read_public_key",
]
