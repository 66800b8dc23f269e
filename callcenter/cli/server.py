"""`callcenter serve`, `callcenter worker`, `callcenter db upgrade`."""

from __future__ import annotations

from typing import Any

import click
from gunicorn.app.base import BaseApplication

from callcenter.app import create_app
from callcenter.cli.context import CliContext, pass_cli
from callcenter.db.migrate import upgrade
from callcenter.errors import ConfigurationError
from callcenter.gunicorn_conf import REQUEST_LIMITS
from callcenter.jobs.worker import run_worker
from callcenter.logs import configure_logging


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@pass_cli
def serve(cli: CliContext, host: str, port: int, threads: int) -> None:
    """Run the web service (migrates an embedded SQLite database first)."""
    # An embedded SQLite database is migrated here (CliContext.services).
    services = cli.services

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            # One process: the embedded default keeps in-process jobs in this process.
            self.cfg.set("workers", 1)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")
            # Gunicorn's own lines, the access log's included, through the service's
            # formatter and phone-number mask (as the Procfile's --logger-class does).
            self.cfg.set("logger_class", "callcenter.logs.GunicornLogger")
            # Bounded request lines and headers (also in callcenter.gunicorn_conf).
            for name, value in REQUEST_LIMITS.items():
                self.cfg.set(name, value)
            if "control_socket_disable" in self.cfg.settings:
                # Gunicorn 24+ opens a control socket at one path per user
                # (~/.gunicorn/gunicorn.ctl): a second server on the host would take it
                # over. Nothing here uses it.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            # Built in the worker process, after gunicorn's fork: connections and the
            # in-process job runner's threads must belong to the process that serves.
            app = create_app(services=services)
            # Start the job runner now: its sweep picks up rows a previous process left
            # pending (and spooled fallback events) without waiting for the next call.
            _ = services.jobs
            return app

    click.echo(f"callcenter: serving on http://{host}:{port}/ (console: /console/)", err=True)
    _Server().run()


@click.command()
@click.option("--burst", is_flag=True, help="Work until the queue is empty, then stop.")
@pass_cli
def worker(cli: CliContext, burst: bool) -> None:
    """Run the RQ job worker (with the scheduler) for the ticket pipeline. It stays up
    while Redis or the database is away, and picks up where it was when they are back."""
    # Before RQ sets up its own handler: its lines then come out in the service's shape.
    configure_logging(cli.services.settings)
    try:
        run_worker(cli.services, burst=burst)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_cli
def db_upgrade(cli: CliContext, revision: str) -> None:
    """Apply the Alembic migrations."""
    # Not `cli.services`: that would take an embedded database to head first.
    upgrade(cli.open_services(migrate=False).settings.database_url, revision)
    click.echo(f"database at {revision}")


commands: list[click.Command] = [serve, worker, db]
