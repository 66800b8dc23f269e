"""Logging: one JSON object a line in production, readable lines for a developer.

    LOG_JSON=1 (the default with CALLCENTER_ENV=production)   JSON lines on stderr
    LOG_JSON=0 (the default otherwise)                         `time LEVEL logger [CallSid]: …`

`configure_logging(settings)` installs one handler on the root logger, so the service's own
records, RQ's worker and job lines and anything a library logs at WARNING or above all
come out in the same shape. Gunicorn keeps its own loggers; `GunicornLogger`
(`gunicorn --logger-class callcenter.logs.GunicornLogger`, see the Procfile) gives them the
same formatter and filters.

Two filters sit on the handler, so they see every record whatever logger it came from:

- `CallContextFilter` puts the CallSid of the call being served on the record: the one
  `call_context(call_sid)` set for this thread/task (the web app sets it for every request
  from the form's `CallSid`; a job sets it for the call it works on), unless the record
  names one itself (`extra={"call_sid": ...}`). One `grep CA…` finds a whole call. (A
  context variable: a thread started inside a call starts without it.)
- `PhoneNumberMask` masks caller numbers (`+7916***4567`) in the message, its arguments,
  the exception and stack text, and the `extra` fields (strings, and lists and dicts of
  them). Logs travel further and live
  longer than the call log (shipped, indexed, kept by the platform), and the personal data
  law's retention purge cannot reach them; a number in a log is never needed to debug:
  the CallSid leads to the call, where the number is kept under access control.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

from callcenter.settings import Settings

# ---------------------------------------------------------------- the call being served

_call_sid: ContextVar[str | None] = ContextVar("callcenter_log_call_sid", default=None)


def current_call_sid() -> str | None:
    """The CallSid log lines of this thread/task are tagged with, if any."""
    return _call_sid.get()


# A CallSid comes from a request form: whatever is not a SID's character is replaced, and
# the length bounded, so a forged value cannot break a plain log line or forge another.
_NOT_SID = re.compile(r"[^A-Za-z0-9_.:-]")
_SID_MAX = 64


def safe_call_sid(raw: object) -> str | None:
    """`raw` as it may appear in a log line (None for nothing)."""
    if raw is None or raw == "":
        return None
    text = str(raw)
    return _NOT_SID.sub("?", text[:_SID_MAX]) + ("…" if len(text) > _SID_MAX else "")


def bind_call_sid(call_sid: str | None) -> Token[str | None]:
    """Tag this context's log lines with `call_sid` until `unbind_call_sid(token)`.
    For code that cannot use a `with` block (a Flask before/teardown request pair)."""
    return _call_sid.set(safe_call_sid(call_sid))


def unbind_call_sid(token: Token[str | None]) -> None:
    _call_sid.reset(token)


@contextmanager
def call_context(call_sid: str | None) -> Iterator[None]:
    """Every log line inside the block carries `call_sid` (a job wraps its work for a call
    in this: `with call_context(row.call.call_sid): ...`)."""
    token = bind_call_sid(call_sid)
    try:
        yield
    finally:
        unbind_call_sid(token)


# ---------------------------------------------------------------- masking caller numbers

# A run of digits that may be a phone number, in any spelling a log line may hold: E.164
# (+79161234567), national (89161234567), formatted (8 (916) 123-45-67), or URL-encoded
# (%2B79161234567). Not inside a word: CallSids and other hex ids are left alone. Dots are
# not separators, so IP addresses and version numbers stay readable. Which runs are
# numbers is decided by `_looks_like_phone` (a date and time, 2025-11-27 11:00, is not).
_CANDIDATE = re.compile(r"(?<![\w*%])(\+|%2[bB])?(\d(?:[ ()\-]{0,2}\d){7,14})(?![\w*])")


_DIGIT = re.compile(r"\d")


def _looks_like_phone(plus: bool, digits: str) -> bool:
    """Which digit runs are masked: anything with a `+` (international), and the Russian
    spellings without one (11 digits from 7/8, 10 digits of an area or mobile code), and
    numbers dialled with an international prefix (00…, 810…). Ten-digit runs starting with
    1 or 2 (Unix times, counters) and short ones (ports, ids, ticket numbers) are not."""
    n = len(digits)
    if plus:
        return 8 <= n <= 15
    if n == 11 and digits[0] in "78":
        return True
    if n == 10 and digits[0] in "3489":
        return True
    return 11 <= n <= 15 and digits.startswith(("00", "810"))


def _masked(match: re.Match[str]) -> str:
    plus, run = match.group(1) or "", match.group(2)
    digits = re.sub(r"\D", "", run)
    if not _looks_like_phone(bool(plus), digits):
        return match.group(0)
    return f"{plus}{digits[:4]}***{digits[-4:]}"


def mask_phone_numbers(text: str) -> str:
    """`text` with every phone number masked: `+79161234567` → `+7916***4567`."""
    if _DIGIT.search(text) is None:  # most lines: no digit, nothing to mask (a fast C scan)
        return text
    return _CANDIDATE.sub(_masked, text)


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class PhoneNumberMask(logging.Filter):
    """Masks phone numbers in everything a record will print. Put it on the handler (a
    logger's filters do not see records propagated from child loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what there is, masked
            record.msg, record.args = f"{record.msg} {record.args!r}", None
            message = record.msg
        masked = mask_phone_numbers(message)
        if masked != message or record.args:
            # Rendered once here, so no argument can bring a number back later.
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phone_numbers(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phone_numbers(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS and key != "call_sid":
                setattr(record, key, _masked_value(value))
        return True


def _masked_value(value: Any) -> Any:
    """An `extra=` value with the numbers in its strings masked (lists and dicts too)."""
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if isinstance(value, Mapping):
        return {k: _masked_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_value(v) for v in value]
    return value


_EXCEPTION_FORMATTER = logging.Formatter()


class CallContextFilter(logging.Filter):
    """Tags the record with the CallSid of the call being served (see `call_context`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        explicit = getattr(record, "call_sid", None)
        record.call_sid = _call_sid.get() if explicit is None else safe_call_sid(explicit)
        return True


# ---------------------------------------------------------------- formatters


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `ts` (UTC, ISO 8601), `level`, `logger`, `msg`, `call_sid`
    when the line belongs to a call, `exc` for an exception, then any `extra=` fields
    (`ticket_request_id`, `ticket_number`, `status`, `ms`, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_sid = getattr(record, "call_sid", None) or _call_sid.get()
        if call_sid:
            payload["call_sid"] = call_sid
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key != "call_sid" and value is not None:
                payload[key] = _jsonable(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        payload["pid"] = record.process
        return json.dumps(payload, ensure_ascii=False, default=str)


# A newline (or any control character but tab) in a logged value — a request path, a form
# field — would start what looks like a new log line of its own: shown escaped instead.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def escape_controls(text: str) -> str:
    """`text` on one line: `\n` → `\\n`, other control characters → `\\xNN`."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(
        lambda m: {"\n": "\\n", "\r": "\\r"}.get(m.group(0), f"\\x{ord(m.group(0)):02x}"), text
    )


class PlainFormatter(logging.Formatter):
    """`2025-11-27 11:00:00,123 INFO callcenter.x [CA…]: message` for a developer.

    The message is kept on its line (control characters escaped), so nothing logged can
    forge a line; a traceback, added after it, keeps its own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        call_sid = getattr(record, "call_sid", None) or _call_sid.get()
        record.__dict__["call"] = f" [{call_sid}]" if call_sid else ""
        try:
            return super().format(record)
        finally:
            del record.__dict__["call"]


# ---------------------------------------------------------------- handlers


class _StderrHandler(logging.StreamHandler[IO[str]]):
    """Writes to whatever `sys.stderr` is at the time of the record (a test harness or a
    process manager may swap it after start-up)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def wants_json(env: Mapping[str, str] | None = None) -> bool:
    """LOG_JSON from the environment, defaulting to on in production mode (as `Settings`)."""
    e = os.environ if env is None else env
    raw = (e.get("LOG_JSON") or "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return (e.get("CALLCENTER_ENV") or "").strip().lower() == "production"


def decorate_handler(handler: logging.Handler, *, json_lines: bool) -> logging.Handler:
    """Give `handler` the service's formatter and filters (context first, then masking)."""
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    for existing in list(handler.filters):
        if isinstance(existing, CallContextFilter | PhoneNumberMask):
            handler.removeFilter(existing)
    handler.addFilter(CallContextFilter())
    handler.addFilter(PhoneNumberMask())
    return handler


def build_handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """The service's log handler: to `stream`, or to the current stderr."""
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    return decorate_handler(handler, json_lines=settings.log_json)


# Our loggers, and RQ's (the worker's job lines), at INFO; everything else at WARNING.
SERVICE_LOGGERS = ("callcenter", "webhooks", "rq")
_INSTALLED = "_callcenter_handler"


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Install the service's handler on the root logger (once per process: calling it again
    replaces the handler, never stacks a second one). Returns the handler."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _INSTALLED, False):
            root.removeHandler(existing)
            existing.close()
    handler = build_handler(settings, stream)
    setattr(handler, _INSTALLED, True)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    return handler


# ---------------------------------------------------------------- command-line output


class MaskedStream:
    """A text stream that masks phone numbers in everything written through it: the
    `callcenter` command's output unless `--unmasked` is given."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    @property
    def unmasked(self) -> IO[str]:
        """The stream underneath, for what must be printed exactly (a new token's secret,
        which a run of digits could otherwise look like a number in)."""
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(mask_phone_numbers(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self._stream.fileno()


@contextmanager
def masked_output() -> Iterator[None]:
    """stdout and stderr masked for the duration (the CLI's output and its log lines)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = MaskedStream(saved[0])
    sys.stderr = MaskedStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


# ---------------------------------------------------------------- gunicorn


try:  # gunicorn is a dependency of the service, but keep this module importable without it
    from gunicorn.glogging import Logger as _GunicornBaseLogger
except ImportError:  # pragma: no cover
    _GunicornBaseLogger = object


class GunicornLogger(_GunicornBaseLogger):  # type: ignore[misc]
    """Gunicorn's own lines (boot, worker timeouts, access log if enabled) in the service's
    shape: `gunicorn --logger-class callcenter.logs.GunicornLogger`."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        json_lines = wants_json()
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                decorate_handler(handler, json_lines=json_lines)
