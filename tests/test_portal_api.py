"""The built-in portal's REST API, checked against its own OpenAPI description.

Every response these tests get passes through `Contract.check`: its status must be
documented for that operation and its body must match the schema `openapi.yaml` gives.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from werkzeug.test import TestResponse

from callcenter.app import create_app
from callcenter.portal import wire
from callcenter.portal.protocol import TicketDraft
from callcenter.services import Services
from callcenter.settings import Settings
from tests.conftest import ROOT, TEST_PUBLIC_BASE, MutableClock

SPEC_PATH = ROOT / "callcenter" / "portal" / "openapi.yaml"
PREFIX = "/portal/api/v1"
TOKEN = "portal-test-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---------------------------------------------------------------- the contract


class Contract:
    """openapi.yaml as a checker of requests and responses."""

    BASE = "urn:callcenter:portal-openapi"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(self.BASE, resource)
        self.templates: list[tuple[re.Pattern[str], str]] = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path)
            for path in spec["paths"]
        ]

    def _validate(self, pointer: str, instance: object) -> None:
        validator = OAS30Validator(
            {"$ref": f"{self.BASE}#{pointer}"},
            registry=self.registry,
            format_checker=oas30_format_checker,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, "\n".join(
            f"{'/'.join(map(str, e.path)) or '<body>'}: {e.message}" for e in errors
        )

    def check_schema(self, name: str, instance: object) -> None:
        self._validate(f"/components/schemas/{name}", instance)

    def template_of(self, path: str) -> str | None:
        for pattern, template in self.templates:
            if pattern.match(path):
                return template
        return None

    def check(self, method: str, path: str, response: TestResponse | requests.Response) -> None:
        """A documented status and a body of the documented shape."""
        status = str(response.status_code)
        content_type = response.headers.get("Content-Type", "")
        assert content_type.startswith("application/json"), content_type
        body = response.json() if isinstance(response, requests.Response) else response.get_json()
        template = self.template_of(path.removeprefix(PREFIX).partition("?")[0])
        operation = self.spec["paths"].get(template or "", {}).get(method.lower())
        if operation is None:
            # Not an operation of the API (a wrong path or method): still a JSON error.
            self.check_schema("Error", body)
            return
        responses = operation["responses"]
        assert status in responses, f"{method} {template} answered {status}: undocumented"
        pointer = f"/paths/{_escape(template or '')}/{method.lower()}/responses/{status}"
        answer = responses[status]
        if "$ref" in answer:
            pointer = answer["$ref"].removeprefix("#")
        self._validate(f"{pointer}/content/application~1json/schema", body)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8")))


class Api:
    """The Flask test client speaking to the portal API; every answer is checked."""

    def __init__(self, client: FlaskClient, contract: Contract) -> None:
        self.client = client
        self.contract = contract

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        **kwargs: Any,
    ) -> TestResponse:
        sent = {**(AUTH if auth else {}), **(headers or {})}
        if body is not None:
            kwargs["json"] = body
        response = self.client.open(PREFIX + path, method=method, headers=sent, **kwargs)
        self.contract.check(method, PREFIX + path, response)
        return response

    def create(self, body: dict[str, Any], key: str = "CA-1") -> TestResponse:
        return self.call("POST", "/tickets", body, headers={"Idempotency-Key": key})


def draft_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": "reports",
        "description": "Не строится отчёт по пробегу",
        "product": "SKAI-Online",
        "vehicles": ["А123ВС77"],
        "contact_name": "Иванова Мария",
        "contact_id": 7,
        "organisation_name": "ООО «Трансавто»",
        "organisation_id": 3,
        "caller": "+79161234567",
        "call_ref": "CA-1",
        "recording_url": None,
        "priority": "normal",
        "first_stage_due": "2025-11-28T08:00:00Z",
        "resolution_due": "2025-12-01T11:00:00+03:00",
    }
    body.update(changes)
    return body


@pytest.fixture
def portal_services(make_services: Callable[..., Services]) -> Services:
    return make_services(builtin_portal_token=TOKEN)


@pytest.fixture
def api(portal_services: Services, contract: Contract) -> Api:
    app: Flask = create_app(services=portal_services)
    app.config.update(TESTING=True)
    return Api(app.test_client(), contract)


@pytest.fixture
def offline_services(tmp_path: Path, clock: MutableClock) -> Iterator[Callable[..., Services]]:
    """Services whose database refuses connections: for answers that must not need it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    built: list[Services] = []

    def make(**changes: Any) -> Services:
        settings = Settings(
            database_url=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
            data_dir=tmp_path,
            public_base_url=TEST_PUBLIC_BASE,
            builtin_portal_token=TOKEN,
        ).with_(**changes)
        built.append(Services.from_settings(settings, clock=clock))
        return built[-1]

    yield make
    for svc in built:
        svc.close()


@pytest.fixture
def offline_api(offline_services: Callable[..., Services], contract: Contract) -> Api:
    return Api(create_app(services=offline_services()).test_client(), contract)


# ---------------------------------------------------------------- the description itself


def test_the_openapi_file_is_a_valid_openapi_3_document(contract: Contract) -> None:
    validate_spec(contract.spec)
    assert contract.spec["openapi"].startswith("3.0")


def test_every_route_is_documented_and_every_documented_operation_is_routed(
    offline_api: Api, contract: Contract
) -> None:
    app = offline_api.client.application
    routed = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(PREFIX)), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("portal_api.")
        and rule.endpoint != "portal_api.no_such_endpoint"
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in contract.spec["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "put", "delete"}
    }
    assert routed == documented


def test_what_the_client_sends_matches_the_documented_draft(contract: Contract) -> None:
    draft = TicketDraft(
        topic="critical_failure",
        description="Сервер не отвечает",
        idempotency_key="CA-9",
        vehicles=("А123ВС77",),
        caller="+79161234567",
        recording_url="https://api.twilio.com/rec/RE1",
        priority="critical",
        first_stage_due=datetime.fromisoformat("2025-11-28T11:00:00+03:00"),
    )
    contract.check_schema("TicketDraft", wire.draft_to_json(draft))
    contract.check_schema("TicketDraft", wire.draft_to_json(TicketDraft("x", "", "k")))


# ---------------------------------------------------------------- access


def test_without_a_token_setting_the_api_is_off_and_says_why(
    offline_services: Callable[..., Services], contract: Contract
) -> None:
    app = create_app(services=offline_services(builtin_portal_token=None))
    api = Api(app.test_client(), contract)
    response = api.call("GET", "/tickets/1001", auth=False)
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "portal_api_disabled"
    assert "BUILTIN_PORTAL_TOKEN is not set" in error["message"]
    # Even with a header: there is no token to compare with.
    assert api.call("POST", "/tickets", {}).status_code == 403


def test_a_missing_or_wrong_token_is_refused(offline_api: Api) -> None:
    api = offline_api
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        response = api.call("GET", "/tickets/1001", headers=headers, auth=False)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"]["code"] == "unauthorized"


# ---------------------------------------------------------------- create


@pytest.mark.both_databases  # ON CONFLICT per dialect
def test_create_answers_201_then_replays_200_with_the_same_ticket(api: Api) -> None:
    created = api.create(draft_body())
    assert created.status_code == 201
    ticket = created.get_json()
    assert created.headers["Location"] == f"{PREFIX}/tickets/1001"
    assert ticket["number"] == "1001"
    assert ticket["status"] == "Новая"
    assert ticket["url"] == f"{TEST_PUBLIC_BASE}/console/tickets/1001"
    # Times come back in Moscow time with the offset, whatever zone they were sent in.
    assert ticket["first_stage_due"] == "2025-11-28T11:00:00+03:00"
    assert ticket["resolution_due"] == "2025-12-01T11:00:00+03:00"
    assert ticket["created_at"] == "2025-11-27T11:00:00+03:00"
    assert [e["kind"] for e in ticket["history"]] == ["created"]

    replay = api.create(draft_body(description="повтор с другим текстом"))
    assert replay.status_code == 200
    assert replay.get_json() == ticket

    other = api.create(draft_body(), key="CA-2")
    assert (other.status_code, other.get_json()["number"]) == (201, "1002")


def test_create_needs_an_idempotency_key(api: Api) -> None:
    missing = api.call("POST", "/tickets", draft_body())
    assert missing.status_code == 400
    assert missing.get_json()["error"]["code"] == "idempotency_key_required"
    spaced = api.call("POST", "/tickets", draft_body(), headers={"Idempotency-Key": "CA 1"})
    assert spaced.status_code == 400
    assert spaced.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert api.call("GET", "/tickets/1001").status_code == 404


def test_a_bad_draft_gets_422_naming_every_field(api: Api) -> None:
    body = draft_body(
        priority="urgent",
        first_stage_due="2025-11-28T11:00:00",
        vehicles="А123ВС77",
        contact_id="7",
        prio="high",
    )
    del body["topic"]
    response = api.create(body)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_fields"
    assert error["fields"] == {
        "contact_id": "must be an integer",
        "first_stage_due": "must be an ISO 8601 date-time with an offset",
        "prio": "unknown field",
        "priority": "must be one of normal, high, critical",
        "topic": "is required",
        "vehicles": "must be a list of strings",
    }
    assert api.call("GET", "/tickets/1001").status_code == 404


def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    form = api.call(
        "POST", "/tickets", headers={"Idempotency-Key": "CA-1"}, data={"topic": "reports"}
    )
    assert form.status_code == 415
    broken = api.call(
        "POST",
        "/tickets",
        headers={"Idempotency-Key": "CA-1"},
        data="{",
        content_type="application/json",
    )
    assert (broken.status_code, broken.get_json()["error"]["code"]) == (400, "invalid_json")
    listed = api.create([draft_body()])  # type: ignore[arg-type]
    assert listed.status_code == 422
    assert listed.get_json()["error"]["fields"] == {"body": "must be a JSON object"}


# ---------------------------------------------------------------- read, entries, duplicates


def test_get_a_ticket_or_a_json_404(api: Api) -> None:
    api.create(draft_body())
    assert api.call("GET", "/tickets/1001").get_json()["number"] == "1001"
    for number in ("1002", "abc"):
        response = api.call("GET", f"/tickets/{number}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "ticket_not_found"


@pytest.mark.both_databases  # ON CONFLICT per dialect
def test_entries_are_added_once_per_key_in_order(api: Api, clock: MutableClock) -> None:
    api.create(draft_body())
    clock.now = datetime.fromisoformat("2025-11-27T11:30:00+03:00")
    comment = api.call(
        "POST", "/tickets/1001/entries", {"text": "Уточнили модель", "author": "Петров"}
    )
    assert comment.status_code == 201
    link = {"attachment_url": "https://files.example/RE1.mp3", "attachment_name": "Запись"}
    first = api.call(
        "POST", "/tickets/1001/entries", link, headers={"Idempotency-Key": "recording:RE1"}
    )
    again = api.call(
        "POST", "/tickets/1001/entries", link, headers={"Idempotency-Key": "recording:RE1"}
    )

    assert (first.status_code, again.status_code) == (201, 200)
    history = again.get_json()["history"]
    assert [(e["kind"], e["at"]) for e in history] == [
        ("created", "2025-11-27T11:00:00+03:00"),
        ("comment", "2025-11-27T11:30:00+03:00"),
        ("attachment", "2025-11-27T11:30:00+03:00"),
    ]
    assert history[2]["attachment_url"] == "https://files.example/RE1.mp3"

    empty = api.call("POST", "/tickets/1001/entries", {"author": "Петров"})
    assert empty.status_code == 422
    assert "text" in empty.get_json()["error"]["fields"]
    missing = api.call("POST", "/tickets/1999/entries", {"text": "?"})
    assert missing.status_code == 404


@pytest.mark.both_databases  # ON CONFLICT per dialect
def test_a_phone_duplicate_makes_the_ticket_critical_once(api: Api) -> None:
    api.create(draft_body(topic="critical_failure"))
    body = {"at": "2025-11-27T09:15:00Z", "caller": "+79161234567", "call_ref": "CA-77"}

    first = api.call("POST", "/tickets/1001/phone-duplicates", body)
    again = api.call("POST", "/tickets/1001/phone-duplicates", body)

    assert (first.status_code, again.status_code) == (201, 200)
    ticket = again.get_json()
    assert ticket["priority"] == "critical"
    assert ticket["duplicated_by_phone_at"] == "2025-11-27T12:15:00+03:00"
    assert [e["kind"] for e in ticket["history"]] == ["created", "phone_duplicate"]
    naive = api.call("POST", "/tickets/1001/phone-duplicates", {"at": "2025-11-27T12:15:00"})
    assert naive.status_code == 422
    assert list(naive.get_json()["error"]["fields"]) == ["at"]


# ---------------------------------------------------------------- one problem, many clients


def test_open_tickets_of_a_contact_or_a_caller_newest_first(api: Api, clock: MutableClock) -> None:
    api.create(draft_body(), key="CA-1")
    clock.now = datetime.fromisoformat("2025-11-27T11:30:00+03:00")
    api.create(draft_body(contact_id=None), key="CA-2")
    api.create(draft_body(contact_id=8, caller="+79031112233"), key="CA-3")
    api.call("PATCH", "/tickets/1001", {"status": "Решена"})

    mine = api.call("GET", "/tickets?status=open&contact_id=7&caller=%2B79161234567")
    assert mine.status_code == 200
    assert [t["number"] for t in mine.get_json()["tickets"]] == ["1002"]
    theirs = api.call("GET", "/tickets?status=open&contact_id=8&limit=1")
    assert [t["number"] for t in theirs.get_json()["tickets"]] == ["1003"]
    assert api.call("GET", "/tickets?status=open&contact_id=99").get_json() == {"tickets": []}

    unasked = api.call("GET", "/tickets?contact_id=7&sort=new")
    assert unasked.status_code == 422
    assert set(unasked.get_json()["error"]["fields"]) == {"status", "sort"}
    nobody = api.call("GET", "/tickets?status=open&limit=x")
    assert set(nobody.get_json()["error"]["fields"]) == {"contact_id", "limit"}


@pytest.mark.both_databases  # row locks per dialect
def test_affected_organisations_are_added_once_each(api: Api) -> None:
    api.create(draft_body())
    body = {"organisations": [{"id": 5, "name": "ООО «Ромашка»"}, {"name": "ИП Сидоров"}]}
    first = api.call("POST", "/tickets/1001/affected-organisations", body)
    again = api.call("POST", "/tickets/1001/affected-organisations", body)

    assert (first.status_code, again.status_code) == (201, 200)
    ticket = again.get_json()
    assert ticket["affected_organisations"] == [
        {"id": 5, "name": "ООО «Ромашка»"},
        {"id": None, "name": "ИП Сидоров"},
    ]
    assert [e["kind"] for e in ticket["history"]] == ["created", "affected_client"]
    bad = api.call("POST", "/tickets/1001/affected-organisations", {"organisations": [{"id": "5"}]})
    assert bad.status_code == 422
    assert list(bad.get_json()["error"]["fields"]) == ["organisations"]
    missing = api.call("POST", "/tickets/1999/affected-organisations", body)
    assert missing.status_code == 404


@pytest.mark.both_databases  # row locks per dialect
def test_an_incident_is_linked_once(api: Api) -> None:
    api.create(draft_body())
    body = {"incident": "7", "label": "сбой СКАЙ Онлайн", "author": "Телефонная линия"}
    first = api.call("POST", "/tickets/1001/incidents", body)
    again = api.call("POST", "/tickets/1001/incidents", body)

    assert (first.status_code, again.status_code) == (201, 200)
    ticket = again.get_json()
    assert ticket["incidents"] == [{"incident": "7", "label": "сбой СКАЙ Онлайн"}]
    assert ticket["history"][-1]["text"] == "Связана с инцидентом сбой СКАЙ Онлайн"
    refused = api.call("POST", "/tickets/1001/incidents", {"label": "без номера"})
    assert refused.status_code == 422
    assert list(refused.get_json()["error"]["fields"]) == ["incident"]


# ---------------------------------------------------------------- status


def test_status_changes_follow_the_workflow(api: Api) -> None:
    api.create(draft_body())
    for status in ("В работе", "Решена", "Закрыта"):
        response = api.call("PATCH", "/tickets/1001", {"status": status, "author": "Петров"})
        assert (response.status_code, response.get_json()["status"]) == (200, status)

    reopened = api.call("PATCH", "/tickets/1001", {"status": "В работе"})
    assert reopened.status_code == 409
    assert reopened.get_json()["error"]["code"] == "invalid_status_change"
    unknown = api.call("PATCH", "/tickets/1001", {"status": "Отложена"})
    assert unknown.status_code == 422
    same = api.call("PATCH", "/tickets/1001", {"status": "Закрыта"})
    assert same.status_code == 200
    assert [e["kind"] for e in same.get_json()["history"]].count("status") == 3


# ---------------------------------------------------------------- routing and outages


def test_unknown_paths_and_methods_answer_json(offline_api: Api) -> None:
    api = offline_api
    nowhere = api.call("GET", "/tickets/1001/nothing")
    assert (nowhere.status_code, nowhere.get_json()["error"]["code"]) == (404, "not_found")
    delete = api.call("DELETE", "/tickets/1001")
    assert delete.status_code == 405
    assert delete.headers["Allow"] == "GET, PATCH"
    replaced = api.call("PUT", "/tickets")
    assert (replaced.status_code, replaced.headers["Allow"]) == (405, "GET, POST")
    # A method no route of the app takes at all: JSON too, with the path's real methods.
    odd = api.call("PROPFIND", "/tickets/1001")
    assert (odd.status_code, odd.headers["Allow"]) == (405, "GET, PATCH")
    assert odd.get_json()["error"]["code"] == "method_not_allowed"
    nothing = api.call("TRACE", "/nothing")
    assert (nothing.status_code, nothing.get_json()["error"]["code"]) == (404, "not_found")
    # The access check comes first, as for every request of the API.
    assert api.call("PROPFIND", "/tickets/1001", auth=False).status_code == 401


def test_a_database_outage_is_a_retryable_503(offline_api: Api) -> None:
    response = offline_api.create(draft_body())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "unavailable"
