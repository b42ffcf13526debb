"""Pseudonymous subject references: `subject_ref = HMAC-SHA256(key, user id)`.

The audit tables never hold a user id, an email or a national id: the audit sink turns
each event's `subject` into its `subject_ref` before the event is queued, spilled or sent
(queue, spill file, NATS stream, database; with the writer process, the writer does it
for decisions, which reach it raw through a pipe), and the export side looks events up
by computing the same reference. The key is 32 random bytes kept in a file (`IDGW_KEY_DIR/
audit_subject_ref.key`, mode 0600), created on first use. Every instance that writes
or exports audit events must use the same file; without it, no reference can be tied
back to a user any more (which is what erasure relies on for events: docs/audit.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from server.json_codec import dumps

KEY_FILE_NAME = "audit_subject_ref.key"
_KEY_BYTES = 32


class SubjectKeyError(Exception):
    """The key file exists but cannot be used (unreadable or malformed)."""


class SubjectRefs:
    """Computes `subject_ref` values under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the subject_ref key needs at least 16 bytes")
        self.key = key  # handed to the audit writer process through a pipe (server.audit.shipper)
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def ref(self, user_id: str) -> str:
        """The subject reference of `user_id` (64 hex digits)."""
        mac = self._mac.copy()  # the key schedule is done once, in __init__
        # surrogatepass: an id may hold a lone surrogate (a JSON escape in a token's
        # `sub`); it must get a reference rather than make `emit` raise
        mac.update(user_id.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    def maybe_ref(self, user_id: str | None) -> str | None:
        return None if user_id is None else self.ref(user_id)

    def value_ref(self, value: object) -> str:
        """What a decision record stores of a sensitive context value: a keyed hash, the
        same for the same value (records stay comparable), in a domain of its own (a
        value never shares a hash with a user id)."""
        mac = self._mac.copy()
        text = value if isinstance(value, str) else dumps(value).decode()
        mac.update(b"sensitive-value\x00" + text.encode("utf-8", "surrogatepass"))
        return "hmac-sha256:" + mac.hexdigest()

    @classmethod
    def from_key_dir(cls, key_dir: Path) -> SubjectRefs:
        return cls(load_or_create_key(key_dir / KEY_FILE_NAME))


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`, created (atomically, once, even with several processes
    starting together) when the file does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(_KEY_BYTES).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() never replaces: of several processes, the first one's key wins.
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path)
        candidate.unlink()
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise SubjectKeyError(f"{path}: not a usable subject_ref key ({exc})") from exc
    if len(key) < 16:
        raise SubjectKeyError(f"{path}: the key is shorter than 16 bytes")
    return key


__all__ = ["KEY_FILE_NAME", "SubjectKeyError", "SubjectRefs", "load_or_create_key"]
