"""A ticket request the job finishes while a later step of the same call refreshes its
draft: the done row keeps the draft its ticket was made from (`outbox.put_request`).

Only PostgreSQL can interleave the two: SQLite serialises writers.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from callcenter.services import Services
from callcenter.tickets import outbox
from tests.ticket_pipeline import open_request, request_row

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
