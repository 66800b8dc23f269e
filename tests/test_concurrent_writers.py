"""Two writers of one call interleaved on PostgreSQL (SQLite serialises writers):

- a ticket request the job finishes while a later step of the same call refreshes its
  draft: the done row keeps the draft its ticket was made from (`outbox.put_request`);
- a recording kept by a job while a webhook keeps another: both stay listed on the call
  (`intake.add_recording_to_row`), so the retention purge deletes both copies.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Connection, text

from callcenter.calls.store import lock_call
from callcenter.db import transaction
from callcenter.db.models import Call
from callcenter.services import Services
from callcenter.tickets import outbox
from callcenter.tickets.intake import add_recording_to_row
from tests.ticket_pipeline import make_call, new_recording_sid, open_request, request_row

RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC0123/Recordings/"

pytestmark = pytest.mark.postgres


def _waiting_on_a_lock(services: Services) -> bool:
    with services.engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
        )
    return bool(waiting)


def test_a_refreshed_draft_never_lands_on_a_request_the_job_finished_meanwhile(
    services: Services,
) -> None:
    request_id = open_request(services)
    before = request_row(services, request_id)
    finished_draft = dict(before.draft)
    newer = {**finished_draft, "description": "дополнено позже"}
    errors: list[BaseException] = []

    with services.engine.connect() as job:
        # The ticket job holds the row (`outbox.lock_request`) while it makes the ticket.
        job.execute(
            text("SELECT id FROM ticket_requests WHERE id = :id FOR UPDATE"), {"id": request_id}
        )

        def later_step() -> None:
            try:
                with services.engine.begin() as step:
                    outbox.put_request(
                        step,
                        call_id=before.call_id,
                        idempotency_key=before.idempotency_key,
                        draft=newer,
                        now=services.clock(),
                    )
            except BaseException as exc:  # handed to the test's thread
                errors.append(exc)

        step_thread = threading.Thread(target=later_step)
        step_thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(services):  # the step's UPDATE waits for the job
            assert time.monotonic() < deadline, "the step never waited for the job's lock"
            assert step_thread.is_alive(), f"the step finished without waiting: {errors}"
            time.sleep(0.01)
        # The step read the row as pending; now the job marks it done and commits.
        job.execute(
            text("UPDATE ticket_requests SET status = :done WHERE id = :id"),
            {"done": outbox.DONE, "id": request_id},
        )
        job.commit()
    step_thread.join(timeout=10)

    assert not step_thread.is_alive() and errors == []
    after = request_row(services, request_id)
    assert after.status == outbox.DONE
    assert after.draft == finished_draft


def test_a_recording_a_job_keeps_while_a_webhook_keeps_another_leaves_both_listed(
    services: Services,
) -> None:
    with transaction(services.sessions) as session:
        call = make_call(session, now=services.clock())
        session.flush()
        call_id, call_sid = call.id, call.call_sid
    by_webhook, by_job = new_recording_sid(), new_recording_sid()
    errors: list[BaseException] = []

    def keep(connection: Connection, sid: str) -> None:
        add_recording_to_row(
            connection,
            call_id,
            recording_sid=sid,
            recording_url=RECORDING_URL + sid,
            kind="voicemail",
            now=services.clock(),
        )

    with services.engine.connect() as step:
        # The webhook's step: the call's row locked, its recording kept, not yet committed.
        lock_call(step, call_sid, now=services.clock())
        keep(step, by_webhook)

        def job() -> None:  # e.g. a call back's recording (`callbacks.dialing`)
            try:
                with services.engine.begin() as connection:
                    keep(connection, by_job)
            except BaseException as exc:  # handed to the test's thread
                errors.append(exc)

        job_thread = threading.Thread(target=job)
        job_thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(services):
            assert time.monotonic() < deadline, "the job never waited for the step's lock"
            assert job_thread.is_alive(), f"the job finished without waiting: {errors}"
            time.sleep(0.01)
        step.commit()
    job_thread.join(timeout=10)

    assert not job_thread.is_alive() and errors == []
    with services.sessions() as session:
        listed = session.get_one(Call, call_id).recording_sids
    assert sorted(listed or []) == sorted([by_webhook, by_job])
