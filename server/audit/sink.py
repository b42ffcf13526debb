"""The interface between the app and the audit trail: `AuditSink`, and its backends.

The app knows only this interface: it asks `audit_sink(settings)` for the backend the
settings name, hands it to the services as their `emit`, starts and stops it in the
lifespan and registers its `readiness` as the `audit_queue` check. Each delivery mode
is a backend, registered under its name by the module that implements it:

    inline    server.audit.publisher  queue, batches and writer in the app's event loop
    process   server.audit.shipper    the same in a child process of each worker
    nats      server.audit.jetstream  the queue is a NATS JetStream stream

`RecentEvents` (server.audit.recent) implements the interface too: the test double, which
keeps what was emitted in memory and stores nothing.

What every sink keeps as program state is plain attributes, summed up by `status()`;
the metrics (server.audit.metrics) and the readiness check are derived from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from server.audit.subject_refs import SubjectRefs
    from server.events import AuditedEvent
    from server.settings import Settings
    from stores import AuditDeadLetterStore, AuditEventStore


@dataclass(frozen=True, slots=True)
class AuditStatus:
    """What a sink has done and holds, at one moment."""

    emitted: int = 0  #: events handed to `emit`
    written: int = 0  #: events stored (by this sink's writer)
    dead_lettered: int = 0  #: events stored as dead letters
    spilled: int = 0  #: events written to a spill file
    retries: int = 0  #: batch writes retried
    depth: int = 0  #: events emitted here and not yet stored (queued, in flight, spilled)
    lag: float = 0.0  #: seconds the oldest of them has waited
    last_error: str | None = None  #: why the last write failed, while it keeps failing
    problem: str | None = "not started"  #: why delivery is not running; None while it runs


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go. `emit` is the request path: it never waits for storage and
    never raises for a malformed event (that one is dead-lettered). `start` and `stop`
    belong to the lifespan; `stop` drains within the drain timeout and spills the rest,
    and events emitted after it are spilled: none is lost."""

    #: The key of `subject_ref`: export looks a user's events up under it.
    subject_refs: SubjectRefs

    def emit(self, event: AuditedEvent) -> None: ...

    async def start(self, events: AuditEventStore, dead_letters: AuditDeadLetterStore) -> None:
        """Start delivering into `events` (a sink may open its own stores instead)."""
        ...

    async def stop(self) -> None: ...

    def status(self) -> AuditStatus: ...

    async def readiness(self) -> tuple[bool, str | None]:
        """The `audit_queue` check of /health/ready."""
        ...

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until everything emitted so far is stored; False after `timeout` seconds
        (tests, benchmarks)."""
        ...


def readiness_of(status: AuditStatus, limit: int) -> tuple[bool, str | None]:
    """Unready past `limit` events not yet stored, or while delivery is not running."""
    detail = f"depth {status.depth} (ready up to {limit}), lag {status.lag:.1f}s"
    if status.last_error:
        detail += f"; last error: {status.last_error[:200]}"
    if status.problem is not None:
        return False, f"{status.problem}; {detail}"
    return status.depth <= limit, detail


#: A backend: builds its sink from the settings.
SinkFactory = Callable[["Settings"], AuditSink]

_BACKENDS: dict[str, SinkFactory] = {}


def register_backend(name: str, factory: SinkFactory) -> None:
    """Make `factory` the backend of delivery mode `name` (once per name)."""
    if name in _BACKENDS and _BACKENDS[name] is not factory:
        raise ValueError(f"audit backend {name!r} is registered already")
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def delivery_mode(settings: Settings, *, served: bool = False) -> str:
    """The backend `settings` name: `nats` with `IDGW_AUDIT_QUEUE=nats`, else
    `IDGW_AUDIT_WRITER`, where `auto` means `process` when `served` by `idgw serve` on a
    SQL database, `inline` otherwise."""
    if settings.audit.queue == "nats":
        return "nats"
    if settings.audit.writer != "auto":
        return settings.audit.writer
    sql = not settings.database_url.startswith("memory:")
    return "process" if served and sql else "inline"


def audit_sink(settings: Settings, *, served: bool = False) -> AuditSink:
    """The sink of the delivery mode `settings` name (see `delivery_mode`)."""
    mode = delivery_mode(settings, served=served)
    try:
        factory = _BACKENDS[mode]
    except KeyError:
        raise ValueError(f"no audit backend {mode!r} (registered: {', '.join(backend_names())})") from None
    return factory(settings)


__all__ = [
    "AuditSink",
    "AuditStatus",
    "SinkFactory",
    "audit_sink",
    "backend_names",
    "delivery_mode",
    "readiness_of",
    "register_backend",
]
