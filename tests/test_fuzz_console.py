"""Property-based fuzzing of the console's filters and forms, signed in as a supervisor and
as a specialist, on SQLite and PostgreSQL, through the Flask test client.

Whatever a signed-in user sends — odd text, hostile text (NUL, control characters,
kilobytes), out-of-range dates — the answer is a page or a redirect, or a 4xx with a
message in Russian: never a 5xx. A specialist's POSTs are 403 whatever they carry.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callcenter.calllog.query import PARAM_NAMES
from callcenter.db import transaction
from callcenter.regulation.topics import TOPICS
from callcenter.services import Services
from tests.console_helpers import add_call, add_user, at, login

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CALL_SID = "CA" + "d4" * 16
CYRILLIC = re.compile(r"[А-Яа-яЁё]")

odd = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
hostile = st.one_of(
    odd,
    st.text(max_size=30).map(lambda t: t + "\x00"),
    st.text(min_size=300, max_size=3000),
    st.sampled_from(
        [
            "0001-01-01",
            "9999-12-31",
            "2025-02-30",
            "0001-01-01T00:00",
            "9999-12-31T23:59",
            "2025-11-27T25:00",
            "\r\nSet-Cookie: x=1",
            '=HYPERLINK("http://evil.example")',
            "' OR 1=1 --",
            "<script>alert(1)</script>",
            "../../etc/passwd",
        ]
    ),
)


@pytest.fixture
def signed_in(app: Flask, services: Services) -> Iterator[dict[str, FlaskClient]]:
    with transaction(services.sessions) as session:
        add_call(session, CALL_SID, at(-10))
    add_user(services, "head", "supervisor")
    add_user(services, "ivanov", "specialist")
    clients = {}
    for name in ("head", "ivanov"):
        client = app.test_client()
        assert login(client, name).status_code == 302
        clients[name] = client
    yield clients


def token_of(client: FlaskClient) -> str:
    page = client.get("/console/").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def assert_answered(response: Any, allowed: set[int]) -> None:
    body = response.get_data(as_text=True)
    response.close()
    assert response.status_code < 500, (response.status_code, body[:500])
    assert response.status_code in allowed, (response.status_code, body[:300])
    if response.status_code in (400, 403):
        assert CYRILLIC.search(body), body[:300]  # a message a person can read


filters = st.dictionaries(st.sampled_from(sorted(PARAM_NAMES)), hostile, max_size=4)


@FUZZ
@given(params=filters, who=st.sampled_from(["head", "ivanov"]))
def test_the_call_log_and_its_export_take_any_filter(
    signed_in: dict[str, FlaskClient], params: dict[str, str], who: str
) -> None:
    client = signed_in[who]
    query = urlencode(params)
    for path in ("/console/", "/console/calls.csv"):
        response = client.get(f"{path}?{query}", headers={"Accept": "text/html"})
        assert_answered(response, {200, 400})


@FUZZ
@given(first=hostile, last=hostile, moment=hostile, who=st.sampled_from(["head", "ivanov"]))
def test_the_dashboard_and_the_roster_take_any_date(
    signed_in: dict[str, FlaskClient], first: str, last: str, moment: str, who: str
) -> None:
    client = signed_in[who]
    dashboard = client.get(
        "/console/dashboard?" + urlencode({"from": first, "to": last}),
        headers={"Accept": "text/html"},
    )
    assert_answered(dashboard, {200, 400})
    roster = client.get("/console/roster?" + urlencode({"at": moment}))
    assert_answered(roster, {200, 400})


form_fields = st.fixed_dictionaries(
    {},
    optional={
        "text": hostile,
        "name": hostile,
        "phones": hostile,
        "email": hostile,
        "organisation_id": hostile,
        "new_organisation": hostile,
        "inn": hostile,
        "stage_one_days": hostile,
        "roster": hostile,
        **{f"{slug}_days": hostile for slug in list(TOPICS)[:2]},
    },
)
FORMS = (
    f"/console/calls/{CALL_SID}/notes",
    f"/console/calls/{CALL_SID}/called-back",
    "/console/directory/contacts/new",
    "/console/directory/organisations/new",
    "/console/roster",
)


@pytest.mark.both_databases
@FUZZ
@given(fields=form_fields, path=st.sampled_from(FORMS))
def test_the_supervisors_forms_take_any_input(
    signed_in: dict[str, FlaskClient], fields: dict[str, str], path: str
) -> None:
    client = signed_in["head"]
    data = {**fields, "csrf_token": token_of(client)}
    response = client.post(path, data=data, headers={"Accept": "text/html"})
    assert_answered(response, {200, 302, 400, 409})


UPLOADS = ("/console/directory/import", "/console/roster")
file_names = st.one_of(
    hostile,
    st.sampled_from(["clients.csv", "roster.yaml", "roster.yml", "list.txt", "x.xlsx", ""]),
)
file_bodies = st.one_of(
    st.binary(max_size=300),
    hostile.map(lambda text: text.encode("utf-8")),
    st.sampled_from([b"\xef\xbb\xbfstaff: []\n", "организация;инн\nООО;1\n".encode("cp1251")]),
)


@pytest.mark.both_databases
@FUZZ
@given(path=st.sampled_from(UPLOADS), name=file_names, body=file_bodies)
def test_the_supervisors_uploads_take_any_file(
    signed_in: dict[str, FlaskClient], path: str, name: str, body: bytes
) -> None:
    client = signed_in["head"]
    data = {"csrf_token": token_of(client), "file": (io.BytesIO(body), name)}
    response = client.post(
        path, data=data, headers={"Accept": "text/html"}, content_type="multipart/form-data"
    )
    assert_answered(response, {200, 302, 400})


@FUZZ
@given(name=hostile.filter(lambda name: name.strip() not in ("", "head")))
def test_sign_out_everywhere_takes_any_name(signed_in: dict[str, FlaskClient], name: str) -> None:
    # Not the supervisor's own name (blank is too): that ends the session under test.
    client = signed_in["head"]
    data = {"csrf_token": token_of(client), "name": name}
    response = client.post(
        "/console/sign-out-everywhere", data=data, headers={"Accept": "text/html"}
    )
    assert_answered(response, {302, 400})


# What a specialist may post: notes (the call-back work is fuzzed with the queue).
SPECIALIST_FORMS = (f"/console/calls/{CALL_SID}/notes",)
SUPERVISOR_ONLY = tuple(path for path in FORMS if path not in SPECIALIST_FORMS)


@FUZZ
@given(fields=form_fields, path=st.sampled_from(SUPERVISOR_ONLY))
def test_a_specialists_post_is_refused_whatever_it_carries(
    signed_in: dict[str, FlaskClient], fields: dict[str, str], path: str
) -> None:
    client = signed_in["ivanov"]
    data = {**fields, "csrf_token": token_of(client)}
    response = client.post(path, data=data, headers={"Accept": "text/html"})
    # The role is looked at before anything the request carries.
    assert_answered(response, {403})


@FUZZ
@given(fields=form_fields, path=st.sampled_from(SPECIALIST_FORMS))
def test_a_specialists_note_takes_any_input(
    signed_in: dict[str, FlaskClient], fields: dict[str, str], path: str
) -> None:
    client = signed_in["ivanov"]
    data = {**fields, "csrf_token": token_of(client)}
    response = client.post(path, data=data, headers={"Accept": "text/html"})
    # A note or a clear refusal (empty, too long, control characters), never a 500.
    assert_answered(response, {200, 302, 400})


@FUZZ
@given(next_url=hostile, name=hostile, password=hostile)
def test_the_login_form_takes_any_input(
    app: Flask, services: Services, next_url: str, name: str, password: str
) -> None:
    client = app.test_client()
    page = client.get("/console/login?" + urlencode({"next": next_url}))
    assert_answered(page, {200, 400})  # 400: a NUL in `next`
    if page.status_code != 200:
        page = client.get("/console/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found is not None
    response = client.post(
        "/console/login",
        data={"csrf_token": found.group(1), "name": name, "password": password, "next": next_url},
        headers={"Accept": "text/html"},
    )
    # 429 once the per-address limit is reached: the fuzzer is one address guessing.
    assert_answered(response, {400, 401, 429})
