"""Structured logging with structlog: JSON lines in production, a console otherwise.

Our own loggers (`structlog.get_logger("idgw.access")`) render straight to the output
stream, without the standard library's record machinery: the access line is written
on every request, so it must cost a few microseconds. Records of libraries that log
through the standard library (uvicorn, watchdog) go through a handler rendering the
same format. Every line carries the `request_id` bound by the middleware (structlog
contextvars). Callers choose what to log: never request bodies, tokens or personal data.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

from server.json_codec import dumps

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


class _Output:
    """Where every line goes; swapped by `configure_logging` (cached loggers follow)."""

    stream: IO[str] = sys.stderr
    lock = threading.Lock()


class _Logger:
    """A structlog logger writing rendered lines to the current `_Output` stream."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "idgw"

    def msg(self, message: str) -> None:
        with _Output.lock:
            stream = _Output.stream
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


def _logger_factory(*args: Any) -> _Logger:
    return _Logger(args[0] if args and isinstance(args[0], str) else None)


def _add_logger_name(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    event["logger"] = record.name if record is not None else getattr(logger, "name", "idgw")
    return event


def _to_json(event: Any, **_: Any) -> str:
    return dumps(event, repr).decode()


def _drop_color_message(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event


def configure_logging(level: str = "INFO", as_json: bool = True, stream: IO[str] | None = None) -> None:
    """Send structlog and standard-library records, rendered alike, to `stream` (stderr)."""
    output = stream or sys.stderr
    _Output.stream = output
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_to_json) if as_json else structlog.dev.ConsoleRenderer(colors=output.isatty())
    )
    tail: list[Any] = [structlog.processors.format_exc_info, renderer] if as_json else [renderer]
    common: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*common, _add_logger_name, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*common, _add_logger_name, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = _StdlibHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StdlibHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn installs its own handlers; let its records reach ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)
        log.handlers.clear()
        log.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # we write our own access line
    for noisy in ("watchdog", "httpx", "httpcore"):
        # httpx logs full URLs at INFO; a URL may carry an identifier.
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StdlibHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _Logger().msg(line)


__all__ = ["configure_logging"]
