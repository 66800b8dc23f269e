"""`/metrics` under the Procfile's gunicorn with several workers: one figure for the
server, whichever worker serves the scrape — the counts of requests every worker served
add up, and survive a worker that is replaced (`callcenter.gunicorn_conf`).

Real processes: the Procfile's `web` line (gunicorn, 2 workers), with JSON logs that say
which worker (`pid`) served each request.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from callcenter.settings import Settings
from tests.processes import Gunicorn, service_env, wait_until

WEBHOOK = "/webhooks/voice/status"
STEP = "voice.status"  # the histogram's label for that webhook


def web_env(settings: Settings, **changes: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "DATABASE_URL": settings.database_url,
        "CALLCENTER_DATA_DIR": str(settings.data_dir),
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "REDIS_URL": None,
        "PROMETHEUS_MULTIPROC_DIR": None,
        "LOG_JSON": "1",
    }
    return service_env(**{**values, **changes})


@pytest.fixture
def start_web(tmp_path: Path) -> Iterator[Any]:
    started: list[Gunicorn] = []

    def start(env: dict[str, str]) -> Gunicorn:
        # One thread a worker: once a worker has served, it starts no more pool threads.
        # (A quit signal that lands while gthread starts one deadlocks the worker until the
        # master kills it after --graceful-timeout: gunicorn's, not ours.)
        web = Gunicorn(env, tmp_path / f"web-{len(started)}.log", workers=2, threads=1)
        started.append(web)
        web.start_and_wait()

        # Both workers serving (not one still booting: gunicorn's quick stop can hang on
        # a worker that is), each on a connection of its own.
        def both_up() -> bool:
            requests.get(web.url + "/healthz", timeout=10).raise_for_status()
            return len(set(served_by(web, "GET", "/healthz"))) == 2

        wait_until(both_up, timeout=60, interval=0, what="both workers to serve")
        return web

    yield start
    for web in started:
        web.stop()


def served_by(web: Gunicorn, method: str, path: str) -> list[int]:
    """The pid of the worker that served each such request so far, from the access lines."""
    return [
        line["pid"]
        for line in web.json_lines(strict=False)
        if line.get("logger") == "callcenter.http"
        and line.get("msg", "").startswith(f"{method} {path} ")
    ]


def post_webhooks(web: Gunicorn, count: int) -> None:
    """`count` webhook requests, each on a connection of its own, so that either worker may
    accept it. Unsigned: refused (403), and timed all the same."""
    for _ in range(count):
        response = requests.post(web.url + WEBHOOK, data={}, timeout=10)
        assert response.status_code == 403


def webhooks_counted(web: Gunicorn) -> float:
    """The histogram's count for the webhook, in one scrape (on a new connection)."""
    response = requests.get(web.url + "/metrics", timeout=10)
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        if family.name == "callcenter_webhook_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels.get("step") == STEP:
                    return sample.value
    return 0.0


def scrapes_until_both_workers_answered(web: Gunicorn) -> list[float]:
    """Scrape until each worker has answered a scrape; what each scrape said."""
    said: list[float] = []

    def both_answered() -> bool:
        said.append(webhooks_counted(web))
        return len(set(served_by(web, "GET", "/metrics"))) == 2

    wait_until(both_answered, timeout=60, interval=0, what="a scrape served by each worker")
    return said


def test_the_counts_of_both_workers_add_up_and_outlive_a_replaced_worker(
    settings: Settings, start_web: Any
) -> None:
    web = start_web(web_env(settings))

    # Requests until both workers have served some (the kernel picks who accepts each).
    sent = 0

    def both_served() -> bool:
        nonlocal sent
        post_webhooks(web, 10)
        sent += 10
        return len(set(served_by(web, "POST", WEBHOOK))) == 2

    wait_until(both_served, timeout=60, interval=0, what="webhooks served by each worker")
    assert len(served_by(web, "POST", WEBHOOK)) == sent
    assert set(scrapes_until_both_workers_answered(web)) == {sent}

    # A worker dies (as on a crash); the master starts another. What it counted stays.
    workers = set(served_by(web, "POST", WEBHOOK))
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: any(
            line.get("msg") == f"metrics: worker {victim} gone, its counts stay"
            for line in web.json_lines(strict=False)
        ),
        timeout=30,
        what="the master to see the worker gone",
        on_timeout=web.log_tail,
    )
    post_webhooks(web, 10)
    sent += 10
    said: list[float] = []

    def scraped_by_the_new_worker() -> bool:
        said.append(webhooks_counted(web))
        return bool(set(served_by(web, "GET", "/metrics")) - workers)

    wait_until(
        scraped_by_the_new_worker,
        timeout=60,
        interval=0,
        what="a scrape served by the new worker",
        on_timeout=web.log_tail,
    )
    assert set(said) == {sent}


def test_the_configured_directory_is_emptied_of_an_earlier_run_and_a_made_one_removed(
    settings: Settings, start_web: Any, tmp_path: Path
) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    # What a previous server left: its counts are not this server's.
    earlier = start_web(web_env(settings, PROMETHEUS_MULTIPROC_DIR=str(configured)))
    post_webhooks(earlier, 5)
    earlier.stop()
    assert list(configured.glob("*.db"))

    web = start_web(web_env(settings, PROMETHEUS_MULTIPROC_DIR=str(configured)))
    post_webhooks(web, 3)
    assert set(scrapes_until_both_workers_answered(web)) == {3}
    web.stop()

    # Without the setting the server makes its own directory, and removes it at the end.
    web = start_web(web_env(settings))
    [made] = [
        line["msg"].rpartition("=")[2]
        for line in web.json_lines(strict=False)
        if line.get("msg", "").startswith("metrics of all workers in")
    ]
    assert Path(made).is_dir() and Path(made) != configured
    web.stop(grace=30)  # past gunicorn's --graceful-timeout: its own exit, whatever happens
    assert not Path(made).exists()
