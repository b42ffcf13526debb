"""The spill files: where events go when they cannot be queued or handed on (a full
queue, a writer process that is down or behind), or are still unwritten when the
shutdown drain runs out of time. Never a silent drop. Every delivery mode spills here.

A spill file is an append-only file of lines (`spill-<pid>-<random>.jsonl`) in the spill
directory, one event per line in the pipeline's line format (`server.audit.encoding`),
written with one `write()` per line on an `O_APPEND` descriptor: a line the process
wrote is in the file even if the process is then killed. Each file is locked (`flock`)
by the process that writes or replays it; a file nobody holds is an orphan (its process
ended) and the next publisher to start claims it. Replay reads a file back in batches;
the file is deleted once every line of it has been delivered (written, or
dead-lettered). A process killed during replay leaves the file to the next one: replays
are idempotent by event id.
"""

from __future__ import annotations

import fcntl
import io
import os
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from engine.clock import utc_now
from server.audit.encoding import encode_event
from stores import AuditEvent

logger = structlog.get_logger("idgw.audit")


@dataclass
class _SpillFile:
    path: Path
    fd: int  # holds the lock for as long as this process owns the file
    lines: int = 0  # lines in the file not yet delivered
    reader: io.BufferedReader | None = None
    first_timestamp: datetime | None = None
    taken: int = 0  # lines handed out by take_lines() and not yet confirmed


@dataclass
class SpillFiles:
    """The spill directory of one publisher."""

    directory: Path
    spilled: int = 0  #: lines this process wrote to spill files
    _active: _SpillFile | None = None
    _replay: deque[_SpillFile] = field(default_factory=deque)

    @property
    def pending(self) -> int:
        """Events in spill files not yet delivered."""
        active = self._active.lines if self._active else 0
        return active + sum(f.lines for f in self._replay)

    def oldest_timestamp(self) -> datetime | None:
        files = [*self._replay, *([self._active] if self._active else [])]
        stamps = [f.first_timestamp for f in files if f.first_timestamp is not None and f.lines]
        return min(stamps) if stamps else None

    def append(self, event: AuditEvent) -> None:
        active = self._active or self._open_new()
        os.write(active.fd, encode_event(event))
        active.lines += 1
        self.spilled += 1
        if active.first_timestamp is None:
            active.first_timestamp = event.timestamp

    def append_lines(self, lines: Iterable[bytes]) -> None:
        """Lines already encoded (events or rejected ones), one `write()` each."""
        active = self._active or self._open_new()
        count = 0
        for line in lines:
            os.write(active.fd, line)
            count += 1
        active.lines += count
        self.spilled += count
        if active.first_timestamp is None and count:
            active.first_timestamp = utc_now()

    def append_released(self, lines: Iterable[bytes]) -> None:
        """Spill `lines` and release the files at once, for the next process to claim
        (what is emitted after a stop)."""
        self.append_lines(lines)
        self.close()

    def claim_orphans(self) -> int:
        """Take over the spill files no live process holds; returns their event count."""
        if not self.directory.is_dir():
            return 0
        claimed = 0
        owned = {f.path for f in self._replay} | ({self._active.path} if self._active else set())
        for path in sorted(self.directory.glob("spill-*.jsonl")):
            if path in owned:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                continue  # replayed and deleted by another process meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process writes or replays it
                continue
            if not path.exists():  # deleted between open and lock
                os.close(fd)
                continue
            with path.open("rb") as f:
                lines = sum(1 for _ in f)
            spill = _SpillFile(path, fd, lines=lines)
            self._replay.append(spill)
            claimed += lines
        if claimed:
            logger.info("audit_spill_claimed", events=claimed, directory=str(self.directory))
        return claimed

    def seal(self) -> int | None:
        """When nothing else is left to replay, seal the active file (no more appends: the
        next spilled event opens a new file) for replay; returns its descriptor, to be
        `fsync`ed before its lines are taken, or None when nothing was sealed."""
        if self._replay or self._active is None or not self._active.lines:
            return None
        active, self._active = self._active, None
        self._replay.append(active)
        return active.fd

    def take_lines(self, limit: int) -> list[bytes]:
        """Up to `limit` spilled lines to deliver, oldest sealed file first (`seal` the
        active file first, when nothing else is left); `confirm()` once they are delivered."""
        while self._replay:  # bounded: an exhausted file is removed each pass
            spill = self._replay[0]
            if spill.reader is None:
                spill.reader = spill.path.open("rb")
            lines = [spill.reader.readline() for _ in range(limit)]
            lines = [line for line in lines if line.strip()]
            if lines:
                spill.taken = len(lines)
                return lines
            self._finish(self._replay.popleft())
        return []

    def confirm(self) -> None:
        """The lines of the last `take_lines()` are delivered; a fully replayed file goes."""
        if not self._replay:
            return
        spill = self._replay[0]
        spill.lines = max(0, spill.lines - spill.taken)
        spill.taken = 0
        if spill.reader is not None and not spill.reader.peek(1):
            self._finish(self._replay.popleft())

    def close(self) -> None:
        """Release every file (unreplayed ones stay for the next process)."""
        for spill in [*self._replay, *([self._active] if self._active else [])]:
            if spill.reader is not None:
                spill.reader.close()
            os.fsync(spill.fd)
            os.close(spill.fd)
        self._replay.clear()
        self._active = None

    def _open_new(self) -> _SpillFile:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"spill-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._active = _SpillFile(path, fd)
        logger.warning("audit_spilling", file=str(path))
        return self._active

    def _finish(self, spill: _SpillFile) -> None:
        if spill.reader is not None:
            spill.reader.close()
        spill.path.unlink(missing_ok=True)  # before unlocking: nobody claims a replayed file
        os.close(spill.fd)


__all__ = ["SpillFiles"]
