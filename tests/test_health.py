"""Health, readiness and metrics, as a platform and Prometheus see them."""

from __future__ import annotations

from flask.testing import FlaskClient

from callcenter.access.tokens import create_token
from callcenter.app import create_app
from callcenter.db import transaction
from callcenter.db.models import Call
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from tests.conftest import ROOT

EXAMPLE_ROSTER = (ROOT / "scripts" / "examples" / "roster.yaml").read_text(encoding="utf-8")


def test_healthz_answers_without_touching_anything(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def token_of(services: Services) -> dict[str, str]:
    """The details of /readyz need an API token (anonymous callers get the status only)."""
    with transaction(services.sessions) as session:
        secret = create_token(session, "probe", now=services.clock()).secret
    return {"Authorization": f"Bearer {secret}"}


def test_readyz_is_unready_with_an_empty_roster_then_ready(
    client: FlaskClient, services: Services
) -> None:
    response = client.get("/readyz", headers=token_of(services))
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["roster"] == "error: empty"
    assert any("График дежурств пуст" in w for w in body["warnings"])

    with services.sessions.begin() as session:
        import_roster(session, EXAMPLE_ROSTER)
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "ready"


def test_readyz_reports_redis_down(make_services: object, services: Services) -> None:
    with services.sessions.begin() as session:
        import_roster(session, EXAMPLE_ROSTER)
    svc = make_services(redis_url="redis://127.0.0.1:1/0")  # type: ignore[operator]
    response = create_app(services=svc).test_client().get("/readyz", headers=token_of(svc))
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"].startswith("error")


def test_readyz_reports_database_down(make_services: object) -> None:
    svc = make_services(  # type: ignore[operator]
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"
    )
    response = create_app(services=svc).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("error")


def test_metrics_expose_business_figures_and_webhook_latency(
    client: FlaskClient, services: Services
) -> None:
    now = services.clock()
    with services.sessions.begin() as session:
        for i, category in enumerate(["incident", "incident", "consultation"]):
            session.add(
                Call(
                    call_sid=f"CA{i:032d}",
                    category=category,
                    state={},
                    vehicles=[],
                    started_at=now,
                    updated_at=now,
                )
            )
    client.post("/webhooks/voice/status", data={})  # any webhook: observed even when refused
    text = client.get("/metrics").get_data(as_text=True)
    assert 'callcenter_calls_total{category="incident"} 2.0' in text
    assert 'callcenter_calls_total{category="consultation"} 1.0' in text
    assert "callcenter_outbox_backlog 0.0" in text
    assert "callcenter_urgent_unanswered 0.0" in text
    assert "callcenter_webhook_seconds_bucket" in text
