"""`callcenter simulate`: play a call against the running service, as Twilio would.

    callcenter simulate --press 2 1 3 --say "А123ВС77"
    callcenter simulate --press 3 '#' --dial-result no-answer,accepted
    callcenter simulate --press 2 --hangup-after 2
    callcenter simulate --incident     # hear the open incident, join it with 1

The core is `callcenter.simulator.twilio.Simulator`; this command only reads options, prints the
conversation as it happens and then the call record with its ticket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from callcenter.calllog.query import get_call
from callcenter.calllog.serialize import call_json
from callcenter.cli.context import CliContext, pass_cli
from callcenter.errors import InvalidInput, SimulationError
from callcenter.incidents import store as incidents
from callcenter.services import Services
from callcenter.simulator.script import (
    Answer,
    CallScript,
    parse_answer_tokens,
    parse_dial_results,
    parse_record_seconds,
)
from callcenter.simulator.twilio import (
    SIMULATOR_ACCOUNT_SID,
    CallLogReader,
    HttpCallLog,
    Line,
    Simulator,
    format_call_summary,
    wait_for_call,
)


class LocalCallLog:
    """Reads the call straight from this project's database, through the API's JSON."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def fetch(self, call_sid: str) -> dict[str, Any] | None:
        with self.services.sessions() as session:
            call = get_call(session, call_sid)
            return call_json(call, lines=self.services.settings.lines) if call else None


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The service.")
@click.option(
    "--public-url",
    envvar="PUBLIC_BASE_URL",
    help="The URL the service believes it has (PUBLIC_BASE_URL), signed over. Default: --url.",
)
@click.option("--from", "from_number", default="+79161234567", show_default=True)
@click.option("--to", "to_number", default="+78002506077", show_default=True)
@click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", help="The service's TWILIO_AUTH_TOKEN.")
@click.option("--account-sid", envvar="TWILIO_ACCOUNT_SID", default=SIMULATOR_ACCOUNT_SID)
@click.option(
    "--dial-result",
    default="",
    help="How each dialled person reacts, in order: accepted, voicemail, declined, "
    "no-answer, busy, failed (e.g. no-answer,accepted). Then: accepted.",
)
@click.option("--record-seconds", default="20", show_default=True, help="E.g. 20 or 20,0.")
@click.option("--talk-seconds", default=60, show_default=True, type=int)
@click.option("--hangup-after", type=int, help="Hang up at the first question after N requests.")
@click.option(
    "--late-callbacks",
    is_flag=True,
    help="Dialled numbers' status callbacks come after the Dial action, newest first.",
)
@click.option("--api-token", envvar="CALLCENTER_API_TOKEN", help="Bearer token to read /api/calls.")
@click.option("--wait", "wait_seconds", default=10.0, show_default=True, help="Wait for ticket.")
@click.option("--real-time", is_flag=True, help="Really sleep through <Pause> (up to 10 s).")
@click.option("--show-requests", is_flag=True, help="Print every request sent.")
@click.option("--json", "as_json", is_flag=True, help="Print the call record as JSON.")
@click.option(
    "--incident",
    "join_incident",
    is_flag=True,
    help="The caller hears the open incident first and joins it with 1 (one must be open: "
    "callcenter incident open …); further answers follow.",
)
@click.argument("answers", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def simulate(
    cli: CliContext,
    url: str,
    public_url: str | None,
    from_number: str,
    to_number: str,
    auth_token: str | None,
    account_sid: str,
    dial_result: str,
    record_seconds: str,
    talk_seconds: int,
    hangup_after: int | None,
    late_callbacks: bool,
    api_token: str | None,
    wait_seconds: float,
    real_time: bool,
    show_requests: bool,
    as_json: bool,
    join_incident: bool,
    answers: Sequence[str],
) -> None:
    """Call the service like Twilio: signed webhooks, TwiML played out, answers from a script.

    Answers, in the order given: --press 2 1 3 (keys), --say "А123ВС77" (speech),
    --silence, --hangup, or --answers 2 "А123ВС77" - hangup (mixed; "-" is silence).
    """
    lead: tuple[Answer, ...] = ()
    if join_incident:
        with cli.services.sessions() as session:
            if incidents.announced(session) is None:
                raise click.UsageError(
                    "--incident: no open incident with a ticket number in this project's "
                    "database (callcenter incident open --product online --message …)"
                )
        lead = (Answer.press("1"),)
    try:
        script = CallScript(
            from_number=from_number,
            to_number=to_number,
            answers=(*lead, *parse_answer_tokens(answers)),
            dial_results=parse_dial_results(dial_result),
            record_seconds=parse_record_seconds(record_seconds),
            talk_seconds=talk_seconds,
            hangup_after=hangup_after,
            late_callbacks=late_callbacks,
        )
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    token = auth_token or cli.services.settings.webhook_signing_token
    if not token:
        raise click.UsageError(
            "pass --auth-token (or TWILIO_AUTH_TOKEN): the service's Twilio auth token, "
            "which signs every webhook"
        )

    def show(line: Line) -> None:
        click.echo(line.render())

    simulator = Simulator(
        url,
        token,
        public_base_url=public_url,
        account_sid=account_sid,
        # The service's clock (CALLCENTER_CLOCK when set): Timestamps match its moment.
        clock=cli.services.clock,
        sleep=time.sleep if real_time else None,
        on_line=show,
    )
    try:
        transcript = simulator.run(script)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None

    if show_requests:
        click.echo("\nЗапросы:")
        for sent in transcript.requests:
            click.echo(f"  {sent.status} {sent.method} {sent.url} [{sent.kind}]")
            for key in sorted(sent.params):
                click.echo(f"      {key}={sent.params[key]}")

    if join_incident and not any("Нам известно о сбое" in said for said in transcript.heard):
        raise click.ClickException("--incident: the service announced no incident")
    click.echo("")
    for text in transcript.speech.summary():
        click.echo(text)
    click.echo("")
    call = _read_call(cli, url, api_token, transcript.call_sid, wait_seconds)
    if call is not None:
        if as_json:
            click.echo(json.dumps(call, ensure_ascii=False, indent=2))
        else:
            for text in format_call_summary(call):
                click.echo(text)
    if transcript.errors:
        raise click.ClickException(
            f"the service failed {len(transcript.errors)} time(s) during the call (see ✖ above)"
        )


def _read_call(
    cli: CliContext, url: str, api_token: str | None, call_sid: str, wait_seconds: float
) -> dict[str, Any] | None:
    reader: CallLogReader
    if api_token:
        reader = HttpCallLog(url, api_token)
    else:
        reader = LocalCallLog(cli.services)
    try:
        call = wait_for_call(reader, call_sid, wait_seconds=wait_seconds)
    except SimulationError as exc:
        click.echo(str(exc), err=True)
        return None
    except SQLAlchemyError:
        call = None
    if call is None:
        click.echo(
            f"The call {call_sid} is not in this project's database. To read it from the "
            "service, create a token (callcenter token create simulator) and pass it with "
            "--api-token or CALLCENTER_API_TOKEN.",
            err=True,
        )
    return call


commands: list[click.Command] = [simulate]
