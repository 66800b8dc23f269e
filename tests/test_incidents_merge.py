"""One failure found twice — two open incidents — merged by a supervisor: the merged one's
joined calls move to the other, each of those callers gets ONE resolution SMS when the
other closes and none at the merge; its ticket is linked to the other incident on the
portal and its organisations join the other ticket's affected ones; it shows as
«объединён с №…». Through the real webhooks, the CLI, the outbox's jobs and Prism."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from callcenter.app import create_app
from callcenter.cli import main
from callcenter.cli.context import CliContext
from callcenter.db.models import SmsMessage
from callcenter.incidents import store
from callcenter.portal.protocol import IncidentLink
from callcenter.regulation.speech import say_digits
from callcenter.services import Services
from callcenter.telephony.client import TwilioExchange
from tests.incident_helpers import add_callers, cli, declare, sms_sent
from tests.job_runner import SynchronousJobRunner
from tests.ticket_pipeline import CALLER, LANDLINE, closed_port_url
from tests.twilio_requests import TwilioCall

pytestmark = pytest.mark.both_databases

RESOLVED = "SKAI ТП: сбой "


def join(services: Services, caller: str) -> str:
    """A caller hears the newest open incident and joins it with 1; what they heard."""
    call = TwilioCall(create_app(services=services).test_client(), caller=caller)
    call.start()
    root = call.press("1")
    call.hang_up()
    return " ".join(say.text or "" for say in root.iter("Say"))


def listed(services: Services) -> dict[int, dict[str, object]]:
    return {item["id"]: item for item in json.loads(cli(services, "incident", "list", "--json"))}


def refused(services: Services, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), obj=CliContext(services))
    assert result.exit_code != 0, result.output
    return result.output


def test_merged_callers_get_one_resolution_sms_when_the_survivor_closes(
    hotline: Services, exchanges: list[TwilioExchange]
) -> None:
    other = add_callers(hotline, 1, organisations=1)[0]  # ООО «Клиент 0»
    survivor, survivor_ticket = declare(hotline, "online", key="ticket-a")
    join(hotline, CALLER)  # ООО «Ромашка», on the survivor
    merged, merged_ticket = declare(hotline, "studio", key="ticket-b")
    # The newest incident is the one callers hear now: they join the second one.
    assert f"заявке номер {say_digits(merged_ticket)}" in join(hotline, CALLER)
    join(hotline, other)
    join(hotline, LANDLINE)  # cannot take an SMS
    # Someone is hearing the second incident's offer while the supervisor merges.
    late = TwilioCall(create_app(services=hotline).test_client(), caller="+79165550777")
    late.start()
    joined_sms = len(sms_sent(exchanges))
    assert joined_sms == 3  # each mobile call «SMS now»; none to the landline
    assert listed(hotline)[merged]["joined_calls"] == 3

    output = cli(hotline, "incident", "merge", str(merged), "--into", str(survivor))
    assert f"incident {merged} merged into {survivor}: 3 call(s) moved to it" in output
    assert f"portal: ticket №{merged_ticket} linked to incident {survivor}" in output
    assert (
        f"portal: ticket №{survivor_ticket} notes the merge; affected organisations: "
        "ООО «Ромашка», ООО «Клиент 0»"
    ) in output
    assert len(sms_sent(exchanges)) == joined_sms  # nothing sent for the merged one

    items = listed(hotline)
    assert (items[merged]["status"], items[merged]["merged_into"]) == ("closed", survivor)
    assert items[merged]["joined_calls"] == 0 and items[merged]["closed_at"] is not None
    assert (items[survivor]["status"], items[survivor]["merged_into"]) == ("open", None)
    assert items[survivor]["joined_calls"] == 4
    table = cli(hotline, "incident", "list")
    assert f"merged into {survivor}" in table

    # On the portal: the merged ticket tracks the survivor; the survivor's ticket notes
    # the merge and names the merged one's organisations among the affected.
    merged_view = hotline.portal.get_ticket(merged_ticket)
    assert [link.incident for link in merged_view.incidents] == [str(survivor)]
    assert merged_view.incidents[0].label == (
        f"сбой №{survivor} (SKAI-Online, заявка №{survivor_ticket})"
    )
    survivor_view = hotline.portal.get_ticket(survivor_ticket)
    assert {o.name for o in survivor_view.affected_organisations} == {
        "ООО «Ромашка»",
        "ООО «Клиент 0»",
    }
    assert any(
        (e.text or "").startswith(f"Сбой №{merged} (SKAI-Studio, заявка №{merged_ticket})")
        for e in survivor_view.history
    )

    # The caller who was offered the merged incident presses 1: joined to the survivor.
    root = late.press("1")
    assert " ".join(s.text or "" for s in root.iter("Say")).startswith(
        f"Ваш звонок зарегистрирован по заявке номер {say_digits(survivor_ticket)}."
    )
    late.hang_up()
    assert listed(hotline)[survivor]["joined_calls"] == 5

    # A second merge, into itself, into a closed one: refused.
    assert "closed already" in refused(
        hotline, "incident", "merge", str(merged), "--into", str(survivor)
    )
    assert "into itself" in refused(
        hotline, "incident", "merge", str(survivor), "--into", str(survivor)
    )
    assert f"№{merged} is closed already" in refused(
        hotline, "incident", "merge", str(survivor), "--into", str(merged)
    )
    assert "closed already" in refused(hotline, "incident", "close", str(merged), "--message", "x")

    before = len(sms_sent(exchanges))
    cli(hotline, "incident", "close", str(survivor), "--message", "Сервер поднят.")
    hotline.jobs.flush()  # the sweep: nothing more is due
    resolved = Counter(m["To"] for m in sms_sent(exchanges)[before:])
    # CALLER joined both incidents: one SMS; the landline none; nothing at all for the
    # merged incident.
    assert resolved == {CALLER: 1, other: 1, "+79165550777": 1}
    assert all(
        m["Body"].startswith(f"{RESOLVED}SKAI-Online устранён (заявка №{survivor_ticket}).")
        for m in sms_sent(exchanges)[before:]
    )
    with hotline.sessions() as session:
        keys = [m.key for m in session.query(SmsMessage)]
    assert not [k for k in keys if k.startswith(f"incident:{merged}:")]
    closing = hotline.portal.get_ticket(survivor_ticket).history[-1].text or ""
    assert "ООО «Клиент 0»" in closing and "ООО «Ромашка»" in closing


def test_a_merge_waits_for_the_portal_and_links_once(
    hotline: Services,
    exchanges: list[TwilioExchange],
    make_services: Callable[..., Services],
    run_jobs_at_once: Callable[[Services], SynchronousJobRunner],
) -> None:
    survivor, survivor_ticket = declare(hotline, "online", key="ticket-a")
    merged, merged_ticket = declare(hotline, "studio", key="ticket-b")
    join(hotline, CALLER)
    hotline.jobs.flush()  # the merged incident's digest tells the specialist of the caller
    digests = [m["Body"] for m in sms_sent(exchanges) if "к сбою" in m["Body"]]
    assert digests == [
        f"SKAI ТП: к сбою №{merged} (заявка №{merged_ticket}) присоединился ещё 1 клиент."
    ]

    # The portal is out of reach when the supervisor merges: the merge itself holds, the
    # link is left for the sweep.
    away = make_services(portal_url=closed_port_url() + "/portal/api/v1", portal_token="t")
    runner = run_jobs_at_once(away)
    output = cli(away, "incident", "merge", str(merged), "--into", str(survivor))
    assert "the link and the affected organisations are queued" in output
    assert [key for key, _exc in runner.failures] == [f"incident:{merged}"]
    runner.failures.clear()
    assert hotline.portal.get_ticket(merged_ticket).incidents == ()
    with hotline.sessions() as session:
        assert store.get_incident(session, merged).followups_done_at is None
        assert store.joined_counts(session, [survivor]) == {survivor: 1}

    # Back: the sweep links it, once, and sends nobody anything — not even a digest for
    # the survivor: the caller it gained was reported already.
    sent = len(sms_sent(exchanges))
    assert hotline.jobs.flush() == 1
    assert hotline.jobs.flush() == 0
    link = hotline.portal.get_ticket(merged_ticket).incidents
    assert link == (
        IncidentLink(str(survivor), f"сбой №{survivor} (SKAI-Online, заявка №{survivor_ticket})"),
    )
    assert len(sms_sent(exchanges)) == sent
