"""What operations watch: the Grafana dashboard (deploy/grafana/callcenter.json) and the
Prometheus alert rules (deploy/prometheus/), against what `/metrics` really exports.

- The dashboard's structure is what Grafana 10/11 imports: unique panel ids, a grid
  position in the 24 columns with no two panels overlapping, every query on the
  `${DS_PROMETHEUS}` datasource variable.
- Every metric and label named by a dashboard query or an alert rule is in a real scrape
  of the app holding a small call log, so renaming a series fails here, not on the wall.
- promtool (Prometheus's own checker) parses the rules and the dashboard's queries and
  runs deploy/prometheus/alerts.test.yml, in which every rule fires once and stays quiet
  once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker
from sqlalchemy import select

from callcenter.app import create_app
from callcenter.callbacks import queue as callback_queue
from callcenter.db import transaction
from callcenter.db.models import CallbackItem
from callcenter.incidents.store import open_incident
from callcenter.jobs.runners import RqJobRunner
from callcenter.roster.importer import import_roster
from callcenter.services import Services
from tests.conftest import ROOT, MutableClock
from tests.console_helpers import LINE_800, LINE_812, sample_log

DASHBOARD = ROOT / "deploy" / "grafana" / "callcenter.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts.test.yml"
EXAMPLE_ROSTER = (ROOT / "scripts" / "examples" / "roster.yaml").read_text(encoding="utf-8")

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Labels Prometheus puts on every scraped series; `up` is its own series per target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_OWN = {"up": TARGET_LABELS}
# Grafana's variables, as Grafana substitutes them before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1d", "$job": "callcenter"}

PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "inf", "nan"}
)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: scripts/test.sh installs it (Debian's `prometheus` "
            "package: apt-get install --no-install-recommends prometheus)"
        )
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


# ---------------------------------------------------------------- reading PromQL


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (not functions, keywords, labels)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {
        name
        for name in re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
        if name not in PROMQL_WORDS
    }


def selector_labels(expr: str) -> dict[str, set[str]]:
    """{series name: label names its matchers use}, e.g. `x{state="failed"}`."""
    found: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        found.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels of `by (…)`/`without (…)` clauses."""
    return {
        label.strip()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }


def test_reading_promql_finds_the_series_and_labels_of_an_expression() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, step) "
        '(rate(callcenter_webhook_seconds_bucket{job="$job"}[$__rate_interval]))) > 1 '
        "and on (instance) up offset 5m unless absent(callcenter_x_total)"
    )
    assert metric_names(expr) == {"callcenter_webhook_seconds_bucket", "up", "callcenter_x_total"}
    assert selector_labels(expr) == {"callcenter_webhook_seconds_bucket": {"job"}}
    assert grouping_labels(expr) == {"le", "step"}


# ---------------------------------------------------------------- the dashboard


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [
        (f"panel {panel['id']} «{panel['title']}» {target['refId']}", target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert inner is not None, query
            queries.append((f"variable ${variable['name']}", inner.group(1)))
    return queries


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    # Grafana 10.x writes schemaVersion 37-39, 11.x 39-41; it migrates older ones itself.
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"] and board["id"] is None
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["job"]["datasource"] == DATASOURCE

    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels():
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys(), panel["title"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "xywh"), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_dashboard_shows_what_the_hotline_is_watched_by() -> None:
    """The figures operations asked for, each on some panel."""
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for series in (
        "callcenter_calls_finished_total",  # calls by line and outcome
        "callcenter_calls_total",  # by category
        "callcenter_urgent_unanswered",
        "callcenter_answer_seconds_bucket",  # time to answer
        "callcenter_outbox_backlog",
        'callcenter_ticket_requests_total{job="$job", state="failed"}',
        "callcenter_callbacks_waiting",  # the call-back queue
        "callcenter_callbacks_overdue",  # its SLA
        "callcenter_incidents_open",
        "callcenter_incident_calls_joined_total",
        "callcenter_ready",  # readiness
        'up{job="$job"}',  # the web
        "callcenter_workers",  # the workers
        "callcenter_webhook_seconds_bucket",
    ):
        assert series in exprs, series


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, Grafana's variables filled in, as a recording rule: promtool parses
    its PromQL."""
    rules = []
    for n, (_, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(checked), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# ---------------------------------------------------------------- the alert rules


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text("utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_alert_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_runs_the_alert_rule_tests() -> None:
    result = run_promtool("test", "rules", str(ALERTS_TEST), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_readmes_promtool_lines_run_as_written() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "README.md").read_text("utf-8").splitlines()
        if line.startswith("    promtool ")
    ]
    assert lines == [
        "promtool check rules deploy/prometheus/alerts.yml",
        "promtool test rules deploy/prometheus/alerts.test.yml",
    ]
    for line in lines:
        result = run_promtool(*line.split()[1:], cwd=ROOT)
        assert result.returncode == 0, line + "\n" + result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_every_alert_rule_fires_in_its_tests_and_stays_quiet_in_them() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text("utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never quiet"
    assert {
        "CallcenterUrgentCallUnanswered",
        "CallcenterOutboxBacklog",
        "CallcenterTicketFailed",
        "CallcenterCallbackOverdue",
        "CallcenterNotReady",
        "CallcenterNoWorker",
    } <= {rule["alert"] for rule in alert_rules()}


def test_promtool_fails_the_rule_tests_when_a_rule_no_longer_fires(tmp_path: Path) -> None:
    """The rule tests can fail: a threshold moved so the overdue call back stays quiet."""
    rules = ALERTS.read_text("utf-8")
    assert "expr: callcenter_callbacks_overdue > 0" in rules
    (tmp_path / "alerts.yml").write_text(
        rules.replace(
            "expr: callcenter_callbacks_overdue > 0", "expr: callcenter_callbacks_overdue > 1"
        )
    )
    shutil.copy(ALERTS_TEST, tmp_path / "alerts.test.yml")
    result = run_promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: CallcenterCallbackOverdue" in result.stdout + result.stderr


# ---------------------------------------------------------------- against a real scrape


@dataclass
class Monitored:
    """The app as Prometheus sees it: `scrape()` is its `/metrics`."""

    services: Services
    client: FlaskClient

    def scrape(self) -> str:
        response = self.client.get("/metrics")
        assert response.status_code == 200
        return response.get_data(as_text=True)


@pytest.fixture
def monitored(
    make_services: Any, redis_url: str, queue_name: str, clock: MutableClock
) -> Iterator[Monitored]:
    """`/metrics` of the app on Redis with the console's sample calls (both lines, every
    outcome, an urgent call nobody accepted, one accepted after 12 s, a failed ticket),
    their call-back items, an open incident, a webhook answered and one live worker."""
    svc: Services = make_services(redis_url=redis_url, queue_name=queue_name)
    sample_log(svc)
    with transaction(svc.sessions) as session:
        import_roster(session, EXAMPLE_ROSTER)
        callback_queue.refresh_queue(session, now=clock(), calendar=svc.calendar, sla_minutes=30)
        open_incident(
            session,
            product="online",
            message="Не открывается карта",
            now=clock(),
            calendar=svc.calendar,
        )
    runner = svc.jobs
    assert isinstance(runner, RqJobRunner)
    worker = Worker([runner.tickets], connection=runner.connection)
    worker.register_birth()
    try:
        client = create_app(services=svc).test_client()
        client.post("/webhooks/voice/status", data={})  # any webhook: observed when refused
        yield Monitored(svc, client)
    finally:
        worker.register_death()


def exported(text: str) -> dict[str, set[str]]:
    """{sample name: its label names} of a scrape."""
    names: dict[str, set[str]] = dict(PROMETHEUS_OWN)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
    return names


def used_by_dashboard_and_alerts() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query, alert rule and rule-test input series."""
    used = list(dashboard_queries())
    used += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for test in yaml.safe_load(ALERTS_TEST.read_text("utf-8"))["tests"]:
        used += [("alerts.test.yml input", series["series"]) for series in test["input_series"]]
    return used


@pytest.mark.both_databases
def test_every_series_the_dashboard_and_alerts_read_is_in_a_real_scrape(
    monitored: Monitored,
) -> None:
    series = exported(monitored.scrape())
    missing = []
    for where, expr in used_by_dashboard_and_alerts():
        names = metric_names(expr)
        assert names, f"{where}: no series found in {expr!r}"
        for name in names:
            if name not in series:
                missing.append(f"{where}: {name}")
                continue
            unknown = selector_labels(expr).get(name, set()) - series[name]
            if unknown:
                missing.append(f"{where}: {name} has no label {sorted(unknown)}")
        known = set().union(*(series.get(name, set()) for name in names))
        if grouping_labels(expr) - known:
            missing.append(f"{where}: no series has {sorted(grouping_labels(expr) - known)}")
    assert not missing, "\n".join(missing)


@pytest.mark.both_databases
def test_the_scrape_has_the_figures_of_the_sample_calls(
    monitored: Monitored, clock: MutableClock
) -> None:
    """The labelled series the dashboard reads, with the sample log's own figures."""
    values = figures(monitored.scrape())

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    finished_800 = value("callcenter_calls_finished_total", line=LINE_800, outcome="completed")
    assert finished_800 >= 1
    assert value("callcenter_calls_finished_total", line=LINE_812, outcome="completed") >= 1
    assert value("callcenter_calls_in_progress", line=LINE_800) == 0
    assert value("callcenter_urgent_unanswered") == 1
    # Two calls taken: after 5 s (a consultation) and 12 s (an urgent call's second leg).
    assert value("callcenter_answer_seconds_count") == 2
    assert value("callcenter_answer_seconds_sum") == 17
    assert value("callcenter_answer_seconds_bucket", le="5.0") == 1
    assert value("callcenter_answer_seconds_bucket", le="10.0") == 1
    assert value("callcenter_answer_seconds_bucket", le="15.0") == 2
    assert value("callcenter_ticket_requests_total", state="failed") == 1
    assert value("callcenter_callbacks_waiting", reason="urgent_missed") == 1
    assert value("callcenter_callbacks_waiting", reason="ticket_failed") == 1
    assert value("callcenter_callbacks_done_total", result="reached") == 0
    assert value("callcenter_incidents_open") == 1
    assert value("callcenter_ready", check="redis") == 1
    assert value("callcenter_workers") == 1
    # The sample calls are two hours old and more: past their 30 working minutes.
    waiting = sum(v for (name, _), v in values.items() if name == "callcenter_callbacks_waiting")
    assert value("callcenter_callbacks_overdue") == waiting == 3

    # A specialist reaches the urgent caller: one item fewer waiting and overdue, one done.
    with transaction(monitored.services.sessions) as session:
        item = session.scalars(
            select(CallbackItem).where(CallbackItem.reason == callback_queue.URGENT_MISSED)
        ).one()
        callback_queue.take(session, item.id, by="smirnova", now=clock())
        callback_queue.record_result(
            session, item.id, result=callback_queue.REACHED, note="", by="smirnova", now=clock()
        )
    after = figures(monitored.scrape())
    assert after[("callcenter_callbacks_waiting", (("reason", "urgent_missed"),))] == 0
    assert after[("callcenter_callbacks_overdue", ())] == 2
    assert after[("callcenter_callbacks_done_total", (("result", "reached"),))] == 1
    assert after[("callcenter_urgent_unanswered", ())] == 0  # called back now


def figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_renamed_series_is_caught() -> None:
    """What the scrape test does when a panel reads a series /metrics no longer has."""
    series = exported("# TYPE callcenter_outbox_backlog gauge\ncallcenter_outbox_backlog 0.0\n")
    assert "callcenter_outbox_backlog" in series
    assert metric_names("max(callcenter_outbox_pending)") - series.keys() == {
        "callcenter_outbox_pending"
    }
