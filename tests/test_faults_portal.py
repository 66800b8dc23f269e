"""The customer's portal answers 500s and times out: callers are not kept waiting, the
tickets arrive once it recovers, and none arrives twice.

Real processes: the Procfile's `web` and `worker` with `PORTAL_URL` pointing at a real HTTP
portal — the built-in portal's REST API (its own database, as a separate system would
have) behind a switch that answers 500, or creates the ticket and answers only after
`HttpPortal`'s read timeout (the client gives up on a ticket that exists). Tickets are
counted on the portal's side, by idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

import callcenter.db.models  # noqa: F401 - the tables
from callcenter.api.portal import bp as portal_api
from callcenter.db import Base
from callcenter.db.models import Ticket, TicketRequest
from callcenter.ivr import prompts
from callcenter.services import Services
from callcenter.settings import Settings
from callcenter.simulator.script import Answer, CallScript
from callcenter.simulator.twilio import Simulator
from tests.conftest import TEST_AUTH_TOKEN, TEST_PUBLIC_BASE
from tests.processes import FlakyPortal, ServiceStack, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prism]

PORTAL_TOKEN = "customer-portal-token"
# HttpPortal reads for 10 s; the slow portal answers after this.
SLOW_ANSWER_SECONDS = 11.0


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[FlakyPortal, Services]]:
    """The customer's portal: its own database, its REST API over real HTTP."""
    svc = Services.from_settings(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'portal.db'}",
            data_dir=tmp_path,
            builtin_portal_token=PORTAL_TOKEN,
        )
    )
    Base.metadata.create_all(svc.engine)
    app = Flask("customer_portal")
    app.extensions["callcenter"] = svc
    app.register_blueprint(portal_api)
    flaky = FlakyPortal(app, delay=SLOW_ANSWER_SECONDS)
    yield flaky, svc
    flaky.close()
    svc.close()


@pytest.fixture
def stack(
    tmp_path: Path,
    start_stack: Callable[..., ServiceStack],
    portal: tuple[FlakyPortal, Services],
) -> ServiceStack:
    return start_stack(
        directory=tmp_path / "service", PORTAL_URL=portal[0].api_url, PORTAL_TOKEN=PORTAL_TOKEN
    )


def outbox(db: Services) -> dict[str, tuple[str, str | None, int]]:
    """CallSid → (status, ticket number, tries) of each ticket request."""
    with db.sessions() as session:
        rows = session.scalars(select(TicketRequest))
        return {r.idempotency_key: (r.status, r.ticket_number, r.attempts) for r in rows}


def portal_tickets(portal_db: Services) -> dict[str, str]:
    """Idempotency key → ticket number, as the portal holds them."""
    with portal_db.sessions() as session:
        return {
            t.idempotency_key or "": str(t.number) for t in session.scalars(select(Ticket)).all()
        }


def test_a_failing_then_slow_portal_gets_every_ticket_once_it_recovers(
    stack: ServiceStack, portal: tuple[FlakyPortal, Services], db: Services
) -> None:
    flaky, portal_db = portal
    # The first ticket is created but answered too late; the second gets a 500; both
    # are retried (the outbox's backoff) against a portal that works again.
    flaky.script = ["slow", "error"]
    simulator = Simulator(stack.web.url, TEST_AUTH_TOKEN, public_base_url=TEST_PUBLIC_BASE)
    calls = [
        simulator.run(CallScript(from_number=number, answers=tuple(map(Answer.press, "211"))))
        for number in ("+79161110011", "+79161110012")
    ]
    for transcript in calls:
        assert transcript.errors == [], transcript.text()
        # The caller did not wait for the portal: the number is promised by SMS.
        assert any(prompts.NUMBER_BY_SMS in line for line in transcript.heard), transcript.text()
    first, second = (t.call_sid for t in calls)

    wait_until(
        lambda: flaky.answered(500) == 1 and len(flaky.creates) >= 2,
        timeout=30,
        what="the portal to fail both first tries",
        on_timeout=stack.logs,
    )
    state = outbox(db)
    assert state[first][0] == state[second][0] == "pending"

    wait_until(
        lambda: {s for s, _n, _t in outbox(db).values()} == {"done"},
        timeout=60,
        what="both tickets after the portal recovered",
        on_timeout=stack.logs,
    )
    state = outbox(db)
    held = portal_tickets(portal_db)
    # Exactly one ticket per call on the portal, and it is the one the call log names,
    # though the first call's create reached the portal twice.
    assert sorted(held) == sorted([first, second])
    assert state[first][1] == held[first] and state[second][1] == held[second]
    assert flaky.creates_by_key()[first] == 2
    assert [s for k, s in flaky.creates if k == first] == [201, 200]
    assert [s for k, s in flaky.creates if k == second] == [500, 201]
    assert state[first][2] == state[second][2] == 2  # one failed try each, then done
