"""Keeping what the fallback path saw, even when the database is down.

The fallback replies (`callcenter.ivr.fallback`) are sent before anything is stored.
Afterwards `keep_fallback_event` logs the event, then tries to put it in the call log; what
cannot be stored is appended as one JSON line to `DATA_DIR/spool/fallback-events.jsonl`,
so it is never silently dropped. `replay_spool` puts spooled events into the call log once
the database is back (a voicemail becomes a callback ticket then).

Every web and worker process of a host shares its spool, and any of them may replay it
(the sweeps, `callcenter spool replay`) while others append. The files, in `DATA_DIR/spool/`:

    fallback-events.jsonl                   the spool: appended by `spool`, one event a line
    fallback-events.lock                    flock: shared while appending, exclusive while a
                                            replay renames the spool to its claim
    fallback-events.<pid>-<hex>.replaying   one replay's claim, flocked by that replay
    <claim>.done                            the ids the claim's replay has finished
    fallback-events.unreadable              lines that are not JSON, kept for a human

Each event is replayed exactly once, by one process:
- A replay claims the spool by renaming it to a name of its own, under the exclusive lock:
  no appender has it open then (they append under the shared lock), so no line lands in a
  file already read, and two replays never read the same claim.
- It holds an flock on its claim until the claim is gone. The kernel drops that lock when
  the process dies, so a claim whose lock is free is a dead replay's leftover; the next
  replay takes it over and skips the ids its `.done` lists.
- Each record carries an `id` (`fallback_record` gives one; a line without one, from an
  older version, is known by its hash). A fallback event's id is kept on its call log event
  (`fallback_id`), and an event already there is not stored again: this covers a replay
  killed after its commit and before its `.done` line. Status and recording callbacks go
  through the call log's own functions, which take a repeated callback as a duplicate (a
  finished call is never changed; a recording is kept once per SID).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from callcenter.calls import store as calls
from callcenter.calls.step_cycle import StepCycle, submit_ticket_requests
from callcenter.db import transaction
from callcenter.db.models import CallEvent
from callcenter.errors import InvalidInput
from callcenter.ivr.conversation import record_recording, record_status
from callcenter.ivr.webhook_params import RecordingStatus, status_callback_from_form
from callcenter.ports import Services
from callcenter.tickets import intake
from callcenter.vocabulary import CATEGORY_TOPICS, Category

log = logging.getLogger(__name__)

SPOOL_FILE = "fallback-events.jsonl"
LOCK_FILE = "fallback-events.lock"
UNREADABLE_FILE = "fallback-events.unreadable"
CLAIM_SUFFIX = ".replaying"
# What an event id looks like (ours are uuid4 hex); a line without one is known by its hash.
_ID = re.compile(r"[\w.-]{1,64}", re.ASCII)
DONE_SUFFIX = ".done"
# Parameters of a fallback request worth keeping (Twilio adds ErrorCode/ErrorUrl to it).
KEPT_PARAMS = (
    "CallSid",
    "From",
    "To",
    "Called",
    "CallStatus",
    "ErrorCode",
    "ErrorUrl",
    "DialCallStatus",
    "DialCallDuration",
    "RecordingSid",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingStatus",
    "SequenceNumber",
    "Timestamp",
    "CallDuration",
)


def spool_dir(data_dir: Path) -> Path:
    return data_dir / "spool"


def spool_path(data_dir: Path) -> Path:
    return spool_dir(data_dir) / SPOOL_FILE


def spool_files(data_dir: Path) -> list[Path]:
    """Where spooled events are now: the claims of replays at work (or dead), then the
    spool itself. What a monitor or a test reads to see everything not yet stored."""
    directory = spool_dir(data_dir)
    return [*sorted(directory.glob(f"*{CLAIM_SUFFIX}")), spool_path(data_dir)]


def fallback_record(
    kind: str, form: Mapping[str, str], at: datetime, **extra: str
) -> dict[str, Any]:
    """What is kept of a request: its id, kind, time and Twilio's key parameters.

    Kinds: `fallback`, `dial_result`, `voicemail`, `step_error` (the fallback path), and
    `status` / `recording_status` (callbacks that could not be stored when they came).
    """
    return {
        "id": uuid.uuid4().hex,
        "kind": kind,
        "at": at.isoformat(),
        "params": {name: form[name] for name in KEPT_PARAMS if form.get(name)},
        **extra,
    }


def keep_fallback_event(services: Services, record: dict[str, Any]) -> bool:
    """Log the event, store it in the call log, or spool it. True when stored."""
    params = record.get("params", {})
    call_sid = params.get("CallSid")
    log.warning(
        "voice fallback: %s (error %s at %s)",
        record.get("kind"),
        params.get("ErrorCode", "-"),
        params.get("ErrorUrl", "-"),
        extra={"call_sid": call_sid},
    )
    try:
        store_fallback_event(services, record)
        return True
    except Exception as exc:
        log.error(
            "could not store fallback event %s (%r); spooled to %s",
            record.get("id"),
            exc,
            spool_path(services.settings.data_dir),
            extra={"call_sid": call_sid},
        )
        spool(services.settings.data_dir, record)
        return False


@contextmanager
def _spool_lock(directory: Path, operation: int) -> Iterator[None]:
    """The spool directory's lock: LOCK_SH to append, LOCK_EX to rename the spool."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


def spool(data_dir: Path, record: dict[str, Any]) -> None:
    """Append `record` (given an id if it has none) to the spool."""
    if not record.get("id"):
        record = {"id": uuid.uuid4().hex, **record}
    _append(data_dir, [record])


def _append(data_dir: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    directory = spool_dir(data_dir)
    with _spool_lock(directory, fcntl.LOCK_SH):
        # One write with O_APPEND: lines from several processes never mix.
        fd = os.open(
            directory / SPOOL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)


def store_fallback_event(services: Services, record: Mapping[str, Any]) -> None:
    """Put one fallback event into the call log. A voicemail left through the fallback
    becomes a callback request: a ticket on the consultation topic unless the call had
    chosen another path. An event whose id the call log already has is not stored again."""
    params: Mapping[str, str] = record.get("params", {})
    call_sid = params.get("CallSid")
    if not call_sid:
        return
    cycle = StepCycle(services.engine, services.sessions, services.clock, lambda: services.jobs)
    if record["kind"] == "status":
        record_status(cycle, status_callback_from_form(params), calendar=services.calendar)
        return
    if record["kind"] == "recording_status":
        kind = record.get("recording_kind", "description")
        record_recording(cycle, RecordingStatus.from_form(params), kind)
        return
    at = datetime.fromisoformat(record["at"])
    event_kind = f"fallback_{record['kind']}"
    record_id: str | None = record.get("id")
    request_id: int | None = None
    with transaction(services.sessions) as session:
        call, created = calls.get_or_create_call(
            session,
            call_sid,
            now=at,
            caller_raw=params.get("From"),
            line_raw=params.get("To") or params.get("Called"),
        )
        if record_id and not created and _in_call_log(session, call.id, event_kind, record_id):
            log.info("fallback event %s is already in the call log", record_id)
            return
        detail = {k: v for k, v in params.items() if k not in ("CallSid", "From", "To", "Called")}
        calls.record_event(session, call, event_kind, at, fallback_id=record_id, **detail)
        if record["kind"] == "voicemail" and params.get("RecordingUrl"):
            if call.category is None or call.category == Category.CONSULTATION:
                call.category = Category.CONSULTATION
                call.topic = call.topic or CATEGORY_TOPICS[Category.CONSULTATION]
            call.routing_outcome = "voicemail"
            url = params["RecordingUrl"]
            # Twilio's RecordingUrl ends in the RecordingSid; older fallbacks send only it.
            sid = params.get("RecordingSid") or url.rstrip("/").rsplit("/", 1)[-1]
            try:
                intake.add_recording(
                    session, call, recording_sid=sid, recording_url=url, kind="voicemail"
                )
            except InvalidInput as exc:
                # The event above keeps the URL; a supervisor sees it on the call page.
                log.warning("spooled voicemail of %s not attached: %s", call_sid, exc)
            if intake.ticketable(call):  # a status enquiry's message is kept, not ticketed
                session.flush()
                request = intake.open_ticket_request(
                    session, call, now=at, calendar=services.calendar
                )
                session.flush()
                request_id = request.id
    if request_id is not None:
        submit_ticket_requests(services.jobs, [request_id], call_sid)


def _in_call_log(session: Session, call_id: int, event_kind: str, record_id: str) -> bool:
    details = session.scalars(
        select(CallEvent.detail).where(CallEvent.call_id == call_id, CallEvent.kind == event_kind)
    )
    return any((detail or {}).get("fallback_id") == record_id for detail in details)


# ---------------------------------------------------------------- replay


class _Claim:
    """A spool file this process replays, its flock held until `close()`."""

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self.file = file

    @property
    def done_path(self) -> Path:
        return self.path.with_name(self.path.name + DONE_SUFFIX)

    @classmethod
    def take_over(cls, path: Path) -> _Claim | None:
        """The claim at `path` if its replay is dead (its lock is free), else None."""
        try:
            file = path.open("rb")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()  # a live replay is working through it
            return None
        # Locked after its replay finished and removed it: not a claim any more.
        try:
            current = os.stat(path)
            mine = os.fstat(file.fileno())
            same = (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
        except FileNotFoundError:
            same = False
        if not same:
            file.close()
            return None
        log.warning("replaying %s, left by a replay that stopped", path.name)
        return cls(path, file)

    @classmethod
    def claim_spool(cls, directory: Path) -> _Claim | None:
        """The spool, renamed to a claim of this replay; None when nothing is spooled."""
        spool_file = directory / SPOOL_FILE
        if not spool_file.exists():  # the usual case of a sweep: no lock taken for nothing
            return None
        with _spool_lock(directory, fcntl.LOCK_EX):
            try:
                file = spool_file.open("rb")
            except FileNotFoundError:
                return None
            # Locked before the rename: a claim is never seen unlocked while its replay
            # lives. Nobody else locks the spool file itself, so this never waits.
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = (
                directory / f"fallback-events.{os.getpid()}-{uuid.uuid4().hex[:12]}{CLAIM_SUFFIX}"
            )
            os.rename(spool_file, path)
        return cls(path, file)

    def finish(self) -> None:
        self.path.unlink()
        self.done_path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        self.file.close()


def replay_spool(services: Services) -> tuple[int, int]:
    """Store the spooled events; those that still fail stay spooled. (stored, left).

    First the claims of replays that died, then the spool as it is now. Events that fail
    again go back to the spool for the next replay; while the database is unreachable the
    rest of a claim goes back untried.
    """
    directory = spool_dir(services.settings.data_dir)
    if not directory.is_dir():
        return 0, 0
    _remove_orphan_journals(directory)
    # All claimed first: what this replay puts back in the spool is the next replay's.
    claims = list(_claims(directory))
    stored = left = 0
    database_down = False
    try:
        for claim in claims:
            claim_stored, claim_left, database_down = _replay(services, claim, database_down)
            stored += claim_stored
            left += claim_left
    finally:
        for claim in claims:
            claim.close()  # after a failure: the claim stays, a later replay takes it over
    return stored, left


def _claims(directory: Path) -> Iterator[_Claim]:
    """The claims of dead replays, then the spool as it is now, claimed."""
    for path in sorted(directory.glob(f"*{CLAIM_SUFFIX}")):
        claim = _Claim.take_over(path)
        if claim is not None:
            yield claim
    fresh = _Claim.claim_spool(directory)
    if fresh is not None:
        yield fresh


def _replay(services: Services, claim: _Claim, database_down: bool) -> tuple[int, int, bool]:
    """(stored, left, database down); with the database down, the claim goes back untried."""
    data_dir = services.settings.data_dir
    done_path = claim.done_path
    try:
        finished = set(done_path.read_text(encoding="utf-8").split())
    except FileNotFoundError:
        finished = set()
    stored = left = 0
    untried: list[dict[str, Any]] = []
    with done_path.open("a", encoding="utf-8") as journal:
        for raw in claim.file.read().decode("utf-8", errors="replace").splitlines():
            if not raw.strip():
                continue
            line_id = hashlib.sha256(raw.strip().encode("utf-8")).hexdigest()[:32]
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                if line_id not in finished:
                    _set_aside(data_dir, raw)
                    _journal(journal, finished, line_id)
                continue
            given = record.get("id")
            record_id = given if isinstance(given, str) and _ID.fullmatch(given) else line_id
            record["id"] = record_id
            if record_id in finished:
                continue
            if database_down:
                untried.append(record)
                finished.add(record_id)  # journaled once the batch is back in the spool
                continue
            try:
                store_fallback_event(services, record)
                stored += 1
            except Exception as exc:
                log.error("spooled fallback event %s still not stored: %r", record_id, exc)
                database_down = isinstance(exc, OperationalError)
                spool(data_dir, record)
                left += 1
            _journal(journal, finished, record_id)
        if untried:
            _append(data_dir, untried)  # one write for the rest of the claim
            journal.write("".join(record["id"] + "\n" for record in untried))
            journal.flush()
            left += len(untried)
    claim.finish()
    return stored, left, database_down


def _journal(journal: IO[str], finished: set[str], record_id: str) -> None:
    journal.write(record_id + "\n")
    journal.flush()
    finished.add(record_id)


def _set_aside(data_dir: Path, raw: str) -> None:
    """A line that is not an event (a torn write, a hand edit): kept apart for a human, so
    it can neither stop every later replay nor be lost."""
    log.error("unreadable line in the fallback spool, moved to %s: %r", UNREADABLE_FILE, raw[:200])
    fd = os.open(
        spool_dir(data_dir) / UNREADABLE_FILE,
        os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
        0o600,
    )
    try:
        os.write(fd, (raw.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def _remove_orphan_journals(directory: Path) -> None:
    """`.done` files whose claim is gone: its replay died between the two removals."""
    for done in directory.glob(f"*{CLAIM_SUFFIX}{DONE_SUFFIX}"):
        if not done.with_name(done.name.removesuffix(DONE_SUFFIX)).exists():
            done.unlink(missing_ok=True)
