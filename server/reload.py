"""Hot reload of the policy directory (what operators see: docs/operations.md).

    watchdog events --> debounce --> build a candidate set --> run its tests --> swap
         (observer thread)   (reload thread, off the event loop)         (one assignment)

`LivePolicies.current` is the only reference requests read: a handler takes it once
and uses that object for the whole request, so it sees the old set or the new one,
never a mix. A candidate that fails to load or fails its own test files is rejected;
the last good set keeps serving, and the rejection is logged with its diagnostics,
counted in `policy_reloads_total{result="rejected"}` and shown by `GET /v1/policies`.

Editors write temporary files and rename them, so events arrive in bursts: the reload
waits until the directory has been quiet for the debounce interval (but never longer
than `MAX_DELAY` after the first event). A cheap fingerprint of the files (path, size,
mtime, inode; symlinks followed) is compared first, so events that change nothing
(swap files, reads, `touch` of an unrelated file) cost no rebuild; the same fingerprint,
checked every `POLL_INTERVAL`, catches anything the observer missed (a directory
replaced wholesale, a ConfigMap symlink swap, an exhausted inotify limit).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

import engine
from engine import Diagnostic, PolicySet
from engine.clock import utc_now, utc_text
from server.facts import CATALOGUE
from server.metrics import POLICY_RELOADS

if TYPE_CHECKING:
    from engine.testing import TestReport

logger = structlog.get_logger("idgw.reload")

ReloadResult = Literal["success", "rejected", "unchanged"]
MAX_DELAY = 1.0  # seconds from the first event of a burst to the reload
POLL_INTERVAL = 2.0  # seconds between fingerprint checks without events
_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})

Fingerprint = tuple[tuple[str, int, int, int], ...]


class PolicyStartupError(Exception):
    """The policy directory cannot serve at start; the message is ready to print."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """The result of one reload attempt, as `GET /v1/policies` shows it."""

    result: ReloadResult
    at: datetime
    revision: str | None
    error: str | None = None
    #: Why the candidate did not load (what the workbench shows with the source lines).
    diagnostics: tuple[Diagnostic, ...] = ()
    tests: dict[str, int] | None = None
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "at": utc_text(self.at),
            "revision": self.revision,
            "error": self.error,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "tests": self.tests,
            "failures": list(self.failures),
        }


@dataclass(slots=True)
class _Candidate:
    policy_set: PolicySet | None
    outcome: ReloadOutcome
    rendered: list[str] = field(default_factory=list)
    #: The gate's run of the candidate's test files (None without a gate)
    report: TestReport | None = None


def fingerprint(policy_dir: Path) -> Fingerprint:
    """(path, size, mtime, inode) of every file the loader would read."""
    layout = engine.discover(policy_dir)
    entries = []
    for path in (*layout.policies, *layout.tests, *layout.data):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
    try:
        root = policy_dir.stat()
        entries.append((str(policy_dir), 0, 0, root.st_ino))
    except OSError:
        pass
    return tuple(sorted(entries))


def _gate(policy_set: PolicySet) -> tuple[TestReport, dict[str, int], list[str], list[str]]:
    """Run the set's own test files: (report, counts, failure lines, rendered errors)."""
    from engine.testing import run_tests

    report = run_tests(policy_set)
    counts = {"passed": report.passed, "failed": report.failed, "errors": len(report.errors)}
    failures = [
        f"{r.file}:{r.line}: {r.purpose}: {r.name}: {'; '.join(r.mismatches)}" for r in report.failures
    ]
    return report, counts, failures, [d.render() for d in report.errors]


def _build(policy_dir: Path, current_revision: str | None, gate: bool) -> _Candidate:
    started = utc_now()
    result = engine.build(policy_dir, catalogue=CATALOGUE)
    errors = result.errors
    if result.policy_set is None or errors:
        return _Candidate(
            None,
            ReloadOutcome(
                "rejected", started, None,
                error=f"policies do not load: {len(errors)} error(s)",
                diagnostics=tuple(errors),
            ),
            [d.render() for d in errors],
        )
    candidate = result.policy_set
    if candidate.revision == current_revision:
        return _Candidate(candidate, ReloadOutcome("unchanged", started, candidate.revision))
    if gate:
        try:
            report, counts, failures, rendered = _gate(candidate)
        except Exception as exc:  # a crash in the gate must not take the server down
            logger.exception("policy_test_gate_crashed")
            return _Candidate(
                None,
                ReloadOutcome("rejected", started, candidate.revision, error=f"policy tests crashed: {exc!r}"),
            )
        if not report.ok:
            return _Candidate(
                None,
                ReloadOutcome(
                    "rejected", started, candidate.revision,
                    error=f"policy tests fail: {counts['failed']} failed, {counts['errors']} error(s)",
                    tests=counts, failures=tuple(failures + rendered),
                ),
                failures + rendered,
            )
        return _Candidate(candidate, ReloadOutcome("success", started, candidate.revision, tests=counts),
                          report=report)
    return _Candidate(candidate, ReloadOutcome("success", started, candidate.revision))


class LivePolicies:
    """The live policy set (one reference, swapped atomically) and its reload status."""

    def __init__(self, policy_dir: str | Path | None, gate: bool = True, *, counted: bool = True) -> None:
        #: The watched directory; None when the sets come from a bundle source
        #: (server.policy_source), which hands each one to `consider`.
        self.policy_dir = Path(policy_dir) if policy_dir is not None else None
        self.gate = gate
        #: Count reloads in `policy_reloads_total` (the live set's; not a shadow's).
        self.counted = counted
        self.current: PolicySet | None = None
        #: The gate's test report on `current`, made from its files when it went live (a
        #: bundle's test files are gone once its set is live; the workbench shows this).
        self.tested: tuple[PolicySet, TestReport] | None = None
        self.last_reload: ReloadOutcome | None = None
        self.counts: dict[str, int] = {"success": 0, "rejected": 0, "unchanged": 0}
        self._fingerprint: Fingerprint | None = None
        self._lock = threading.Lock()

    def load_initial(self, directory: Path | None = None) -> PolicySet:
        """Load at start (the watched directory, or `directory`: a bundle extracted there);
        raise `PolicyStartupError` (diagnostics rendered) on failure."""
        source = directory if directory is not None else self.watched_dir()
        with self._lock:
            seen = fingerprint(source) if directory is None else None
            candidate = _build(source, None, self.gate)
            if candidate.policy_set is None:
                detail = "\n".join(candidate.rendered) or (candidate.outcome.error or "")
                raise PolicyStartupError(
                    f"cannot serve the policies in {source}: {candidate.outcome.error}\n{detail}".rstrip()
                )
            self.current = candidate.policy_set
            self.tested = (self.current, candidate.report) if candidate.report is not None else None
            self._fingerprint = seen
            logger.info(
                "policies_loaded", revision=self.current.revision, purposes=sorted(self.current.purposes),
                tests=candidate.outcome.tests,
            )
            return self.current

    def watched_dir(self) -> Path:
        if self.policy_dir is None:
            raise PolicyStartupError("no policy directory: the policies come from a bundle source")
        return self.policy_dir

    def changed(self) -> bool:
        return fingerprint(self.watched_dir()) != self._fingerprint

    def reload(self, force: bool = False) -> ReloadOutcome | None:
        """Rebuild if the files changed (always with `force`); swap if the candidate is good.

        Returns None when the fingerprint shows nothing changed.
        """
        policy_dir = self.watched_dir()
        with self._lock:
            seen = fingerprint(policy_dir)
            if not force and seen == self._fingerprint:
                return None
            self._fingerprint = seen
            return self._consider(policy_dir)

    def consider(self, directory: Path) -> ReloadOutcome:
        """Build the set in `directory`, gate it, and swap it in when it is good: how a
        bundle's set (extracted there) goes live, by the same steps as a reload."""
        with self._lock:
            return self._consider(directory)

    def _consider(self, directory: Path) -> ReloadOutcome:
        live = self.current
        candidate = _build(directory, live.revision if live else None, self.gate)
        outcome = candidate.outcome
        # The status is read without the lock: record the outcome before the swap so
        # that a reader who sees the new revision also sees how it got there.
        self.last_reload = outcome
        if outcome.result == "success" and candidate.policy_set is not None:
            self.current = candidate.policy_set  # the atomic swap
            self.tested = (candidate.policy_set, candidate.report) if candidate.report is not None else None
            logger.info(
                "policy_reloaded", revision=outcome.revision,
                previous=live.revision if live else None, tests=outcome.tests,
            )
        elif outcome.result == "rejected":
            logger.warning(
                "policy_reload_rejected", error=outcome.error, candidate_revision=outcome.revision,
                serving=live.revision if live else None, diagnostics=candidate.rendered,
            )
        else:
            logger.debug("policy_reload_unchanged", revision=outcome.revision)
        # ("unchanged" after a rejection means the files are back to the live set:
        # the old error no longer applies, so it is replaced too.)
        self.counts[outcome.result] += 1
        if self.counted:
            POLICY_RELOADS.labels(outcome.result).inc()
        return outcome

    def status(self) -> dict[str, Any]:
        """What `GET /v1/policies` reports about this process's live set."""
        live = self.current
        return {
            "revision": live.revision if live else None,
            "loaded_at": utc_text(live.loaded_at) if live else None,
            "policy_dir": str(self.policy_dir) if self.policy_dir is not None else None,
            "purposes": [
                {
                    "name": p.name,
                    "description": p.description,
                    "file": p.file,
                    "consent": list(p.consent),
                    "evidence": list(p.facts),
                    "context": [f.name for f in p.context],
                    "rules": len(p.rules),
                }
                for p in (live.purposes.values() if live else ())
            ],
            "last_reload": self.last_reload.to_dict() if self.last_reload else None,
            "reloads": dict(self.counts),
            "pid": os.getpid(),
        }


class _Debouncer:
    """Runs `action` once a burst of pokes has been quiet for `quiet` seconds.

    Also runs `idle` every `poll` seconds without pokes. Both run on this one thread,
    so reloads never overlap.
    """

    def __init__(
        self, quiet: float, action: Callable[[], object], idle: Callable[[], object], poll: float
    ) -> None:
        self.quiet = quiet
        self.action = action
        self.idle = idle
        self.poll = poll
        self._cond = threading.Condition()
        self._first: float | None = None
        self._last: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="idgw-policy-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._last is None and not self._stopped:
                    self._cond.wait(self.poll)
                if self._stopped:
                    return
                burst = self._last is not None
                while self._first is not None and self._last is not None and not self._stopped:
                    deadline = min(self._last + self.quiet, self._first + MAX_DELAY)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopped:
                    return
                self._first = self._last = None
            try:
                self.action() if burst else self.idle()
            except Exception:  # keep watching whatever happened
                logger.exception("policy_reload_crashed")


class _EventHandler(FileSystemEventHandler):
    def __init__(self, poke: Callable[[], None]) -> None:
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Our own reads produce `opened`/`closed_no_write`; reacting would loop forever.
        if event.event_type not in _IGNORED_EVENTS:
            self._poke()


class PolicyWatcher:
    """Watches `live.policy_dir` and reloads `live` on changes, off the event loop."""

    def __init__(self, live: LivePolicies, debounce: float = 0.15, poll: float = POLL_INTERVAL) -> None:
        self.live = live
        self._debouncer = _Debouncer(debounce, self._on_burst, self._on_idle, poll)
        self._observer: Any = None
        self._watched_inode: int | None = None

    def start(self) -> None:
        self._schedule()
        self._debouncer.start()

    def stop(self) -> None:
        self._debouncer.stop()
        self._unschedule()

    def _schedule(self) -> None:
        self._unschedule()
        path = self.live.watched_dir()
        try:
            self._watched_inode = path.stat().st_ino
        except OSError:
            self._watched_inode = None
            return  # nothing to watch yet; the poll notices when it appears
        observer = Observer()
        observer.schedule(_EventHandler(self._debouncer.poke), str(path), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _unschedule(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5.0)
            self._observer = None

    def _on_burst(self) -> None:
        self.live.reload()

    def _on_idle(self) -> None:
        try:
            inode: int | None = self.live.watched_dir().stat().st_ino
        except OSError:
            inode = None
        if inode != self._watched_inode:
            # The directory itself was replaced: the old watch points at a dead inode.
            self._schedule()
        if self.live.changed():
            logger.info("policy_change_detected_by_poll")
            self.live.reload()


__all__ = [
    "LivePolicies",
    "PolicyStartupError",
    "PolicyWatcher",
    "ReloadOutcome",
    "fingerprint",
]
