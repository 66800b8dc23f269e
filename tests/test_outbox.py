"""The outbox row's life: backoff on an unreachable portal, a visible failure, a supervisor's
retry, what the sweep finds due, and `callcenter outbox list|retry` as a person sees them.

The portal here is real: the HTTP adapter against a port nothing listens on (refused at
once), or the built-in portal in the same database. RQ is in test_jobs_rq.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db import transaction
from callcenter.errors import TicketRequestNotRetryable, UnknownTicketRequest
from callcenter.portal.protocol import TicketDraft
from callcenter.services import Services
from callcenter.tickets import outbox
from tests.conftest import MutableClock
from tests.ticket_pipeline import closed_port_url, open_request, request_row, ticket_count

# ON CONFLICT inserts and FOR UPDATE claims differ per dialect.
pytestmark = pytest.mark.both_databases


def deliver(services: Services, request_id: int) -> outbox.Delivery:
    return outbox.deliver(services.sessions, services.portal, request_id, clock=services.clock)


def due(services: Services) -> tuple[list[int], list[int]]:
    with services.sessions() as session:
        now = services.clock()
        return outbox.due_ticket_ids(session, now), outbox.due_followup_ids(session, now)


def test_retry_delays_go_from_seconds_to_an_hour_and_stay_there() -> None:
    # The first three tries within a minute (a dependency restarting), then up to an
    # hour (one that is down for long is not hammered); ~3.8 h of tries in all.
    assert [outbox.retry_delay(n).total_seconds() for n in range(1, 14)] == [
        5,
        15,
        30,
        60,
        120,
        300,
        600,
        1800,
        3600,
        3600,
        3600,
        3600,
        3600,
    ]
    total = sum(outbox.retry_delay(n).total_seconds() for n in range(1, outbox.MAX_ATTEMPTS))
    assert 3.5 * 3600 < total < 4 * 3600
    with pytest.raises(ValueError, match="at least 1"):
        outbox.retry_delay(0)


def test_a_draft_survives_the_json_it_is_kept_in() -> None:
    draft = TicketDraft(
        topic="stolen_vehicle",
        description="Угон",
        idempotency_key="CA" + "1" * 32,
        vehicles=("А123ВС77",),
        priority="high",
        first_stage_due=datetime.fromisoformat("2025-11-28T11:00:00+03:00"),
        resolution_due=None,
    )
    stored = outbox.draft_to_json(draft, received_at="2025-11-27T08:00:00+00:00")
    assert stored["vehicles"] == ["А123ВС77"]
    assert stored["first_stage_due"] == "2025-11-28T11:00:00+03:00"
    assert outbox.draft_from_json(stored) == draft


def test_an_unreachable_portal_is_retried_with_backoff_until_the_request_fails_visibly(
    make_services: Callable[..., Services], clock: MutableClock
) -> None:
    services = make_services(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    request_id = open_request(services)

    for attempt in range(1, outbox.MAX_ATTEMPTS):
        assert due(services) == ([request_id], [])
        delivery = deliver(services, request_id)
        assert (delivery.status, delivery.recorded) == ("pending", True)
        row = request_row(services, request_id)
        assert row.attempts == attempt
        assert row.last_error is not None and row.last_error.startswith("portal unavailable")
        assert row.next_attempt_at == services.clock() + outbox.retry_delay(attempt)
        clock.now += outbox.retry_delay(attempt) - timedelta(seconds=1)
        assert due(services) == ([], [])  # not yet
        clock.now += timedelta(seconds=1)

    delivery = deliver(services, request_id)
    assert delivery.failed
    row = request_row(services, request_id)
    assert (row.status, row.attempts) == ("failed", outbox.MAX_ATTEMPTS)
    assert row.last_error is not None and "portal unavailable" in row.last_error
    assert row.followups["failures"] == 1
    assert due(services) == ([], [request_id])  # the on-duty alert is due
    assert ticket_count(services) == 0


def test_the_first_request_through_after_an_outage_makes_the_others_waiting_due_at_once(
    make_services: Callable[..., Services], services: Services, clock: MutableClock
) -> None:
    """A portal outage leaves requests waiting out backoffs of different lengths; once one
    of them gets through, the portal is back, and the others are due at once — the
    sweep submits them now, not when their backoff would have ended."""
    down = make_services(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    first, second, third = (open_request(down) for _ in range(3))
    for tries in range(1, 5):  # the third request met the outage four times: 60 s to wait
        deliver(down, third)
        if tries < 4:
            clock.now += outbox.retry_delay(tries)
    deliver(down, first)
    deliver(down, second)
    waiting_until = request_row(down, third).next_attempt_at
    assert waiting_until is not None and waiting_until > services.clock()
    assert due(services) == ([], [])

    clock.now += outbox.retry_delay(1)  # the first one's next try: the portal is back
    assert due(services) == ([first, second], [])
    assert deliver(services, first).created
    # The third (60 s to go) is due now, and the second, which was due anyway, stays due.
    assert due(services) == ([second, third], [first])
    assert request_row(services, third).next_attempt_at == services.clock()
    assert deliver(services, third).created and deliver(services, second).created


def test_a_request_through_at_its_first_try_changes_no_other_schedule(
    make_services: Callable[..., Services], services: Services
) -> None:
    down = make_services(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    waiting = open_request(down)
    deliver(down, waiting)
    scheduled = request_row(down, waiting).next_attempt_at
    assert deliver(services, open_request(services)).created  # never met trouble itself
    assert request_row(services, waiting).next_attempt_at == scheduled


def test_a_supervisor_retries_only_a_failed_request(
    make_services: Callable[..., Services], services: Services, clock: MutableClock
) -> None:
    down = make_services(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    request_id = open_request(down)
    with transaction(down.sessions) as session:
        row = outbox.lock_request(session, request_id)
        assert row is not None
        row.attempts = outbox.MAX_ATTEMPTS - 1
    assert deliver(down, request_id).failed

    with transaction(services.sessions) as session:
        with pytest.raises(UnknownTicketRequest, match="no ticket request with id 999"):
            outbox.retry_request(session, 999, now=services.clock())
    clock.now += timedelta(hours=1)
    with transaction(services.sessions) as session:
        row = outbox.retry_request(session, request_id, now=services.clock(), by="Петрова")
        assert (row.status, row.attempts, row.next_attempt_at) == (
            "pending",
            0,
            services.clock(),
        )
    with transaction(services.sessions) as session:
        with pytest.raises(TicketRequestNotRetryable, match="still pending"):
            outbox.retry_request(session, request_id, now=services.clock())

    delivery = deliver(services, request_id)  # the built-in portal is up
    assert delivery.created
    row = request_row(services, request_id)
    assert row.followups["retries"] == [{"at": services.clock().isoformat(), "by": "Петрова"}]
    assert row.followups["failures"] == 1
    with transaction(services.sessions) as session:
        with pytest.raises(TicketRequestNotRetryable, match=f"ticket №{delivery.ticket_number}"):
            outbox.retry_request(session, request_id, now=services.clock())


def test_a_second_run_of_a_done_request_changes_nothing(services: Services) -> None:
    request_id = open_request(services)
    first = deliver(services, request_id)
    second = deliver(services, request_id)
    assert first.created and not second.recorded
    assert second.ticket_number == first.ticket_number
    assert request_row(services, request_id).attempts == 1
    assert ticket_count(services) == 1


def test_list_requests_newest_first_by_status(services: Services) -> None:
    first = open_request(services)
    second = open_request(services)
    deliver(services, first)
    with services.sessions() as session:
        assert [r.id for r in outbox.list_requests(session)] == [second, first]
        assert [r.id for r in outbox.list_requests(session, status="done")] == [first]
        with pytest.raises(ValueError, match="status must be one of"):
            outbox.list_requests(session, status="lost")


def test_outbox_list_shows_what_a_supervisor_needs(
    make_services: Callable[..., Services], services: Services
) -> None:
    down = make_services(portal_url=closed_port_url() + "/api/v1", portal_token="t")
    pending = open_request(down)
    deliver(down, pending)
    done = open_request(services)
    number = deliver(services, done).ticket_number
    runner = CliRunner()

    result = runner.invoke(main, ["outbox", "list"], obj=CliContext(services))
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split("  ")[0] == "ID"
    assert [h.strip() for h in header.split("  ") if h.strip()] == [
        "ID",
        "CALL",
        "STATUS",
        "TRIES",
        "TICKET",
        "LAST ERROR",
        "NEXT TRY (MSK)",
    ]
    assert lines[0].split()[2:5] == ["done", "1", str(number)]
    assert "portal unavailable" in lines[1]
    assert lines[1].split()[2:5] == ["pending", "1", "—"]
    assert lines[1].endswith("27.11.2025 11:00:05")  # Moscow time, 5 s after the first try

    result = runner.invoke(main, ["outbox", "list", "--status", "failed"], obj=CliContext(services))
    assert (result.exit_code, result.output) == (0, "no ticket requests with status failed\n")


def test_outbox_retry_says_clearly_what_cannot_be_retried(services: Services) -> None:
    done = open_request(services)
    number = deliver(services, done).ticket_number
    runner = CliRunner()

    result = runner.invoke(main, ["outbox", "retry", "999"], obj=CliContext(services))
    assert result.exit_code == 1
    assert "Error: no ticket request with id 999" in result.output

    result = runner.invoke(main, ["outbox", "retry", str(done)], obj=CliContext(services))
    assert result.exit_code == 1
    assert f"it already has ticket №{number}" in result.output
