"""Property-based fuzzing of the JSON APIs, on SQLite and PostgreSQL, through the Flask
test client: `/api/calls` (query strings, CallSids, tokens) and the built-in portal's
`/portal/api/v1` (bodies, headers, ticket numbers).

Whatever comes in, the answer is JSON: a success, or a 4xx whose body names the problem
(`{"error": ...}`) — never a 5xx, never an exception. Odd input (short printable text) and
hostile input (NUL characters, kilobytes) are separate properties, so a failure says
which kind of input the service cannot take.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callcenter.access.tokens import create_token
from callcenter.calllog.query import CATEGORIES, OUTCOMES, PAGE_PARAMS, PARAM_NAMES
from callcenter.calls import store as calls
from callcenter.db import transaction
from callcenter.portal.protocol import TicketDraft
from callcenter.regulation.topics import TOPICS
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, TEST_PUBLIC_BASE

FUZZ = hypothesis_settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = hypothesis_settings(FUZZ, phases=(Phase.explicit, Phase.reuse, Phase.generate))
PORTAL_TOKEN = "fuzz-portal-token"
CALL_SIDS = ("CA" + "e5" * 16, "CA" + "f6" * 16)

odd = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=19)
hostile = st.one_of(st.text(max_size=30), st.text(min_size=200, max_size=3000))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:  # noqa: F811
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_auth_token=TEST_AUTH_TOKEN,
        public_base_url=TEST_PUBLIC_BASE,
        secret_key="test-secret",
        builtin_portal_token=PORTAL_TOKEN,
    )


@pytest.fixture
def api_token(services: Services) -> str:
    """A token for /api/calls, and a few calls for it to list (events, a ticket request)."""
    from callcenter.tickets.intake import open_ticket_request

    now = services.clock()
    with transaction(services.sessions) as session:
        for sid, category in zip(CALL_SIDS, ("incident", None), strict=True):
            call, _ = calls.get_or_create_call(
                session, sid, now=now, caller_raw="+79161234567", line_raw="+78002506077"
            )
            calls.record_event(session, call, "incoming", now, step="start")
            if category:
                call.category, call.topic, call.product = category, "system_reports", "studio"
                session.flush()
                open_ticket_request(session, call, now=now, calendar=services.calendar)
        secret: str = create_token(session, "fuzz", now=now).secret
    return secret


@pytest.fixture
def ticket_number(services: Services) -> str:
    """One ticket on the built-in portal, for the per-ticket endpoints."""
    from callcenter.portal.builtin import BuiltinPortal

    portal = BuiltinPortal(services.sessions, services.clock)
    view = portal.create_ticket(
        TicketDraft(topic="system_reports", description="Отчёт не строится", idempotency_key="k1")
    )
    return view.number


def assert_json_answer(response: Any, allowed: set[int]) -> dict[str, Any]:
    """A JSON answer with an allowed status; a 4xx says what was wrong."""
    body = response.get_data(as_text=True)
    assert response.status_code in allowed, (response.status_code, body[:500])
    assert response.mimetype == "application/json", (response.mimetype, body[:300])
    data = json.loads(body)
    if response.status_code >= 400:
        assert isinstance(data, dict) and data.get("error"), data
    assert isinstance(data, dict)
    return data


# ---------------------------------------------------------------- /api/calls


def query_values(junk: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    likely = st.sampled_from(
        [
            "",
            "2025-11-27",
            "2025-02-30",
            "27.11.2025",
            "true",
            "false",
            "maybe",
            "1",
            "0",
            "-1",
            "999999999999999999999",
            "+78002506077",
            "78002506077",
            *CATEGORIES,
            *OUTCOMES,
            *sorted(TOPICS)[:3],
            "incident,critical",
            "Иванов",
            "%",
            "_",
            "' OR 1=1 --",
        ]
    )
    return st.one_of(likely, junk)


def call_queries(junk: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
    names = st.one_of(st.sampled_from([*PARAM_NAMES, *PAGE_PARAMS]), junk.filter(bool))
    return st.dictionaries(names, query_values(junk), max_size=5)


def check_call_list(client: FlaskClient, token: str, query: Mapping[str, str]) -> None:
    response = client.get(
        "/api/calls?" + urlencode(query), headers={"Authorization": f"Bearer {token}"}
    )
    data = assert_json_answer(response, {200, 400})
    if response.status_code == 200:
        assert isinstance(data["calls"], list) and data["total"] >= len(data["calls"])
    else:
        assert data["error"] == "invalid_filter" and "parameter" in data, data


@FUZZ
@given(query=call_queries(odd))
def test_the_call_log_api_answers_any_odd_query_with_json(
    client: FlaskClient, api_token: str, query: dict[str, str]
) -> None:
    check_call_list(client, api_token, query)


@pytest.mark.both_databases  # NUL bytes: PostgreSQL refuses them
@HOSTILE
@given(query=call_queries(hostile))
@example(query={"q": "Иван\x00"})
@example(query={"line": "+7" + "9" * 3000})
def test_the_call_log_api_answers_any_hostile_query_with_json(
    client: FlaskClient, api_token: str, query: dict[str, str]
) -> None:
    check_call_list(client, api_token, query)


@pytest.mark.both_databases  # NUL bytes: PostgreSQL refuses them
@FUZZ
@given(
    # No "/": a CallSid with one is another URL (a routing miss), not this endpoint.
    call_sid=st.one_of(
        st.sampled_from(CALL_SIDS), hostile.filter(lambda s: "/" not in s and s.strip("."))
    ),
    authorization=st.one_of(
        st.none(),
        st.just("good"),
        st.text(max_size=40).filter(lambda h: "\r" not in h and "\n" not in h),
    ),
)
def test_a_call_by_any_sid_or_token_is_json_200_401_or_404(
    client: FlaskClient, api_token: str, call_sid: str, authorization: str | None
) -> None:
    headers = {}
    if authorization == "good":
        headers["Authorization"] = f"Bearer {api_token}"
    elif authorization is not None:
        headers["Authorization"] = authorization.encode("utf-8").decode("latin-1")
    response = client.get("/api/calls/" + quote(call_sid, safe=""), headers=headers)
    data = assert_json_answer(response, {200, 401, 404})
    if authorization != "good":
        assert response.status_code == 401, data
    elif response.status_code == 200:
        assert data["call_sid"] == call_sid


# ---------------------------------------------------------------- /portal/api/v1


def json_values(junk: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        junk,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(junk, inner, max_size=4)
        ),
        max_leaves=12,
    )


def draft_bodies(junk: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Drafts: mostly the contract's fields with plausible or junk values."""
    anything = json_values(junk)
    at = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    fields = {
        "topic": st.one_of(st.sampled_from(sorted(TOPICS)), anything),
        "description": st.one_of(st.just("Не строится отчёт"), anything),
        "product": st.one_of(st.sampled_from(("studio", "online", "unknown")), anything),
        "vehicles": st.one_of(st.lists(st.sampled_from(("А123ВС77", "X")), max_size=3), anything),
        "contact_name": anything,
        "contact_id": st.one_of(st.integers(-5, 10**12), anything),
        "organisation_name": anything,
        "organisation_id": st.one_of(st.integers(-5, 10**12), anything),
        "caller": st.one_of(st.just("+79161234567"), anything),
        "call_ref": st.one_of(st.sampled_from(CALL_SIDS), anything),
        "recording_url": st.one_of(st.just("https://example.test/r.mp3"), anything),
        "priority": st.one_of(st.sampled_from(("normal", "high", "critical")), anything),
        "first_stage_due": st.one_of(at, anything),
        "resolution_due": st.one_of(at, anything),
    }
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.builds(
            lambda d, extra: {**d, **extra},
            st.fixed_dictionaries({}, optional=fields),
            st.dictionaries(junk, anything, max_size=2),
        ),
        anything,
    )


def portal_requests(junk: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    anything = json_values(junk)
    entry = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "text": st.one_of(st.just("Перезвонили клиенту"), anything),
                "attachment_url": st.one_of(st.just("https://example.test/a.pdf"), anything),
                "attachment_name": anything,
                "author": anything,
            },
        ),
        anything,
    )
    change = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.one_of(st.sampled_from(("Новая", "В работе", "Решена")), anything),
                "priority": st.one_of(st.sampled_from(("normal", "critical")), anything),
                "author": anything,
                "comment": anything,
            },
        ),
        anything,
    )
    duplicate = st.one_of(
        st.fixed_dictionaries(
            {"at": st.one_of(st.just("2025-11-27T11:00:00+03:00"), anything)},
            optional={"caller": anything, "call_ref": anything},
        ),
        anything,
    )
    # Header values: anything HTTP can carry (no line breaks).
    key = st.one_of(
        st.none(), st.sampled_from(CALL_SIDS), junk.filter(lambda k: not ({"\r", "\n"} & set(k)))
    )
    # Numbers that route to the ticket endpoints ("/" or a newline would be another URL).
    number = st.one_of(
        st.just("ticket"),
        st.just("1000000000000000000000"),
        junk.filter(lambda n: n.strip() and "/" not in n and "\n" not in n),
    )
    return st.one_of(
        st.fixed_dictionaries(
            {
                "method": st.just("POST"),
                "path": st.just("/tickets"),
                "body": draft_bodies(junk),
                "key": key,
            }
        ),
        st.fixed_dictionaries(
            {
                "method": st.just("PATCH"),
                "path": st.just("/tickets/{n}"),
                "body": change,
                "key": st.none(),
                "number": number,
            }
        ),
        st.fixed_dictionaries(
            {
                "method": st.just("POST"),
                "path": st.just("/tickets/{n}/entries"),
                "body": entry,
                "key": key,
                "number": number,
            }
        ),
        st.fixed_dictionaries(
            {
                "method": st.just("POST"),
                "path": st.just("/tickets/{n}/phone-duplicates"),
                "body": duplicate,
                "key": st.none(),
                "number": number,
            }
        ),
        st.fixed_dictionaries(
            {
                "method": st.sampled_from(("GET", "DELETE", "PUT")),
                "path": st.just("/tickets/{n}"),
                "body": anything,
                "key": st.none(),
                "number": number,
            }
        ),
    )


def check_portal_request(client: FlaskClient, existing: str, request: dict[str, Any]) -> None:
    number = request.get("number")
    if number == "ticket":
        number = existing
    path = "/portal/api/v1" + request["path"].format(n=quote(str(number or ""), safe=""))
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}", "Content-Type": "application/json"}
    if request["key"] is not None:
        headers["Idempotency-Key"] = request["key"].encode("utf-8").decode("latin-1")
    response = client.open(
        path, method=request["method"], data=json.dumps(request["body"]), headers=headers
    )
    assert_json_answer(response, {200, 201, 400, 404, 405, 409, 415, 422})


@FUZZ
@given(request=portal_requests(odd))
def test_the_portal_api_answers_any_odd_request_with_json(
    client: FlaskClient, ticket_number: str, request: dict[str, Any]
) -> None:
    check_portal_request(client, ticket_number, request)


@pytest.mark.both_databases  # NUL bytes: PostgreSQL refuses them
@HOSTILE
@given(request=portal_requests(hostile))
@example(
    request={
        "method": "POST",
        "path": "/tickets",
        "key": "k-nul",
        "body": {"topic": "system_reports", "description": "отчёт\x00"},
    }
)
def test_the_portal_api_answers_any_hostile_request_with_json(
    client: FlaskClient, ticket_number: str, request: dict[str, Any]
) -> None:
    check_portal_request(client, ticket_number, request)


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)),
    content_type=st.sampled_from(
        ("application/json", "text/plain", "application/x-www-form-urlencoded", "")
    ),
    authorization=st.sampled_from(("good", "none", "wrong")),
)
def test_the_portal_api_refuses_what_is_not_json_or_not_authorised_with_json(
    client: FlaskClient, body: bytes, content_type: str, authorization: str
) -> None:
    headers = {"Idempotency-Key": "k-raw"}
    if content_type:
        headers["Content-Type"] = content_type
    if authorization == "good":
        headers["Authorization"] = f"Bearer {PORTAL_TOKEN}"
    elif authorization == "wrong":
        headers["Authorization"] = "Bearer nope"
    response = client.post("/portal/api/v1/tickets", data=body, headers=headers)
    data = assert_json_answer(response, {200, 201, 400, 401, 415, 422})
    if authorization != "good":
        assert response.status_code == 401, data
