"""The fallback spool shared by a host's processes: appended by several, replayed by
several at once, replays killed midway — every spooled event ends in the call log exactly
once, and nothing stays behind in the spool.

Real processes where it matters: `tests/spool_actors.py` appends and replays as web
processes and sweeps do; `callcenter spool replay` is the operator's command.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from callcenter.calls import store as calls
from callcenter.db import transaction
from callcenter.db.models import Call, CallEvent, TicketRequest
from callcenter.ivr.spool import (
    SPOOL_FILE,
    UNREADABLE_FILE,
    fallback_record,
    replay_spool,
    spool,
    spool_dir,
    spool_files,
    store_fallback_event,
)
from callcenter.services import Services
from callcenter.settings import Settings
from tests.processes import VENV_BIN, ManagedProcess, run_cli, service_env, wait_until

# Concurrent processes storing each event exactly once: per dialect.
pytestmark = pytest.mark.both_databases

AT = datetime(2025, 11, 27, 8, 0, tzinfo=UTC)
RECORDING_SID = "RE" + "a" * 32
RECORDING_URL = (
    "https://api.twilio.com/2010-04-01/Accounts/AC" + "0" * 32 + f"/Recordings/{RECORDING_SID}"
)


def event(call_sid: str, kind: str = "fallback", **params: str) -> dict[str, Any]:
    form = {"CallSid": call_sid, "From": "+79161234567", "To": "+78002506077", **params}
    return fallback_record(kind, form, AT)


def stored_ids(services: Services) -> Counter[str]:
    """How many times each fallback event is in the call log, by its id."""
    with services.sessions() as session:
        details = session.scalars(select(CallEvent.detail).where(CallEvent.kind.like("fallback_%")))
        return Counter(str(detail.get("fallback_id")) for detail in details)


def left_in_spool(data_dir: Path) -> list[str]:
    """Every file of the spool that still holds or tracks events (the lock file does not)."""
    directory = spool_dir(data_dir)
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != "fallback-events.lock")


def cli_env(settings: Settings) -> dict[str, str]:
    return service_env(
        DATABASE_URL=settings.database_url,
        CALLCENTER_DATA_DIR=str(settings.data_dir),
        REDIS_URL=None,
        LOG_JSON="0",
    )


def replay_command(settings: Settings) -> tuple[int, int]:
    """`callcenter spool replay` as a real process: (stored, left) as it reports them."""
    done = run_cli(["spool", "replay"], cli_env(settings))
    found = re.search(r"(\d+) events stored, (\d+) still waiting", done.stdout)
    assert found is not None and done.returncode == 0, done.stdout + done.stderr
    return int(found[1]), int(found[2])


# ---------------------------------------------------------------- processes at once


def test_appends_and_two_replays_at_once_store_every_event_exactly_once(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    writers, per_writer = 3, 120
    go, stop = tmp_path / "go", tmp_path / "writers-done"
    env = cli_env(settings)
    python = VENV_BIN / "python"

    def actor(name: str, args: str) -> ManagedProcess:
        return ManagedProcess(
            name, f"{python} -m tests.spool_actors {args}", env, tmp_path / f"{name}.log"
        )

    replayers = [actor(f"replay-{i}", f"replay {go} {stop}") for i in range(2)]
    appenders = [actor(f"write-{i}", f"write {i} {per_writer} {go}") for i in range(writers)]
    everyone = [*replayers, *appenders]
    try:
        for process in everyone:
            process.start()
        for process in everyone:  # all imported and waiting: they start together
            wait_until(
                lambda p=process: "ready" in p.log_text() or not p.alive,  # type: ignore[misc]
                timeout=60,
                what=f"{process.name} to be ready",
            )
        go.touch()
        for process in appenders:
            assert process.proc is not None and process.proc.wait(timeout=60) == 0, (
                process.log_tail()
            )
        stop.touch()
        for process in replayers:
            assert process.proc is not None
            assert process.proc.wait(timeout=120) == 0, process.log_tail()
    finally:
        for process in everyone:
            process.stop()

    expected = {f"w{w}-{n}" for w in range(writers) for n in range(per_writer)}
    in_log = stored_ids(services)
    assert set(in_log) == expected
    assert [key for key, count in in_log.items() if count != 1] == []
    # What the two replays reported adds up to the events, each counted by one of them.
    reported = [
        int(line.split()[0])
        for process in replayers
        for line in process.log_text().splitlines()
        if re.fullmatch(r"\d+ \d+", line)
    ]
    assert sum(reported) == len(expected)
    assert left_in_spool(settings.data_dir) == []


@contextmanager
def writes_to_call_held(url: str, call_sid: str) -> Iterator[None]:
    """Writes to `call_sid`'s call wait while this is open: PostgreSQL locks that row;
    SQLite, which has no row locks, holds its one write lock (every write waits)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT id FROM calls WHERE call_sid = :sid FOR UPDATE"), {"sid": call_sid}
            ).one()
            yield
    finally:
        engine.dispose()


def test_a_replay_killed_midway_is_taken_over_and_nothing_is_stored_twice(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    first, held, last = ("CA" + c * 32 for c in "123")
    with transaction(services.sessions) as session:  # the held call has a row to lock
        calls.get_or_create_call(session, held, now=AT, caller_raw=None, line_raw=None)
    records = [event(sid, ErrorUrl=f"/step/{i}") for sid in (first, held, last) for i in range(5)]
    for record in records:
        spool(settings.data_dir, record)
    sqlite = settings.database_url.startswith("sqlite")

    replayer = ManagedProcess(
        "replay", f"{VENV_BIN / 'callcenter'} spool replay", cli_env(settings), tmp_path / "r.log"
    )
    with writes_to_call_held(settings.database_url, held):
        replayer.start()
        try:
            # It claims the spool and stores what it can: on PostgreSQL the first call's
            # five events (journalled), on SQLite nothing. Then it waits on the held call.
            stored_before = 0 if sqlite else 5
            claim = wait_until(
                lambda: next(
                    (
                        p
                        for p in spool_files(settings.data_dir)[:-1]
                        if p.with_name(p.name + ".done").exists()
                        and len(p.with_name(p.name + ".done").read_text().split()) == stored_before
                    ),
                    None,
                ),
                timeout=60,
                what="the replay to claim the spool and reach the held call",
                on_timeout=replayer.log_tail,
            )
            assert replayer.alive
            # Another replay meanwhile leaves a live replay's claim alone.
            assert replay_command(settings) == (0, 0)
            assert claim.exists()
            replayer.kill()  # SIGKILL: no clean-up, its claim stays behind
        finally:
            replayer.stop()
    assert stored_ids(services) == Counter(r["id"] for r in records[:stored_before])

    # The next replay finds the dead replay's claim, and stores the rest of it once.
    assert replay_command(settings) == (len(records) - stored_before, 0)
    assert stored_ids(services) == Counter(r["id"] for r in records)
    assert left_in_spool(settings.data_dir) == []


# ---------------------------------------------------------------- what a dead replay leaves


def test_an_event_stored_just_before_its_replay_died_is_not_stored_again(
    make_services: Any, redis_url: str, queue_name: str
) -> None:
    """The narrowest window: the replay committed an event and died before noting it in its
    journal. The call log knows the event by its id."""
    # Jobs on Redis: the in-process runner's sweep would replay the claim by itself.
    services: Services = make_services(redis_url=redis_url, queue_name=queue_name)
    sid = "CA" + "4" * 32
    records = [
        event(sid, "fallback", ErrorCode="11200"),
        event(sid, "dial_result", DialCallStatus="no-answer"),
        event(sid, "voicemail", RecordingSid=RECORDING_SID, RecordingUrl=RECORDING_URL),
        event(sid, "voicemail", RecordingSid=RECORDING_SID, RecordingUrl=RECORDING_URL),
    ]
    directory = spool_dir(services.settings.data_dir)
    directory.mkdir(parents=True)
    claim = directory / "fallback-events.4242-0123456789ab.replaying"
    claim.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    # What it did before it died: three stored, only the first noted as done.
    for record in records[:3]:
        store_fallback_event(services, record)
    (directory / (claim.name + ".done")).write_text(records[0]["id"] + "\n", "utf-8")

    assert replay_spool(services) == (3, 0)
    assert stored_ids(services) == Counter(r["id"] for r in records)
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        kinds = [e.kind for e in call.events]
        assert kinds.count("fallback_voicemail") == 2  # two voicemail requests came
        assert kinds.count("recording_added") == 1  # one recording
        requests = session.scalars(select(TicketRequest).where(TicketRequest.call_id == call.id))
        assert len(requests.all()) == 1
    assert left_in_spool(services.settings.data_dir) == []


def test_the_leftover_of_an_older_version_is_replayed_once(services: Services) -> None:
    """Before claims had names of their own a replay renamed the spool to
    `fallback-events.replaying`, and its lines had no ids; one left by a crash is replayed,
    a repeated line (the same event spooled twice) stored once."""
    sid = "CA" + "6" * 32
    lines = [
        {"kind": "fallback", "at": AT.isoformat(), "params": {"CallSid": sid, "ErrorCode": "1"}},
        {"kind": "step_error", "at": AT.isoformat(), "params": {"CallSid": sid}},
    ]
    directory = spool_dir(services.settings.data_dir)
    directory.mkdir(parents=True)
    text_lines = [json.dumps(line) for line in lines]
    (directory / "fallback-events.replaying").write_text(
        "\n".join([*text_lines, text_lines[0]]) + "\n", "utf-8"
    )

    assert replay_spool(services) == (2, 0)
    with services.sessions() as session:
        call = session.scalars(select(Call).where(Call.call_sid == sid)).one()
        assert sorted(e.kind for e in call.events) == ["fallback_fallback", "fallback_step_error"]
    assert replay_spool(services) == (0, 0)
    assert left_in_spool(services.settings.data_dir) == []


def test_an_unreadable_line_is_set_aside_and_the_rest_replayed(services: Services) -> None:
    good = [event("CA" + "7" * 32), event("CA" + "8" * 32)]
    spool(services.settings.data_dir, good[0])
    path = spool_dir(services.settings.data_dir) / SPOOL_FILE
    with path.open("a", encoding="utf-8") as torn:
        torn.write('{"kind": "fallback", "at": "2025-11-\n')  # a write cut short
    spool(services.settings.data_dir, good[1])

    assert replay_spool(services) == (2, 0)
    assert stored_ids(services) == Counter(r["id"] for r in good)
    assert left_in_spool(services.settings.data_dir) == [UNREADABLE_FILE]
    unreadable = spool_dir(services.settings.data_dir) / UNREADABLE_FILE
    assert unreadable.read_text("utf-8") == '{"kind": "fallback", "at": "2025-11-\n'


# ---------------------------------------------------------------- the database still down


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_with_the_database_still_down_everything_stays_spooled_tried_once(
    settings: Settings, make_services: Any, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    dead = make_services(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/callcenter"
    )
    records = [event("CA" + "9" * 32, ErrorUrl=f"/step/{i}") for i in range(4)]
    for record in records:
        spool(settings.data_dir, record)

    with caplog.at_level("ERROR", logger="callcenter.ivr.spool"):
        assert replay_spool(dead) == (0, 4)
    # One attempt saw the database gone; the others went back to the spool untried.
    assert len([r for r in caplog.records if "still not stored" in r.getMessage()]) == 1
    assert [p.name for p in spool_files(settings.data_dir) if p.exists()] == [SPOOL_FILE]
    kept = [
        json.loads(line)
        for line in spool_files(settings.data_dir)[-1].read_text("utf-8").splitlines()
    ]
    assert [r["id"] for r in kept] == [r["id"] for r in records]

    assert replay_spool(services) == (4, 0)
    assert stored_ids(services) == Counter(r["id"] for r in records)
    assert left_in_spool(settings.data_dir) == []
