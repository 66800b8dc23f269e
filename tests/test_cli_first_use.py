"""Every `callcenter` command on a fresh clone: it works on the embedded SQLite database
(made and migrated on first use), or says in one line what to run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from callcenter.cli import main
from tests.conftest import PG_ADMIN_URL
from tests.processes import run_cli, service_env

ROOT = Path(__file__).resolve().parent.parent

# Each subcommand as a newcomer would first type it, and a line of what it then prints.
FIRST_COMMANDS: list[tuple[list[str], int, str]] = [
    (["roster", "now"], 0, "head of support: none"),
    (["roster", "show"], 0, "График дежурств пуст"),
    (["roster", "import", "scripts/examples/roster.yaml"], 0, "roster imported: 4 staff"),
    (["directory", "list"], 0, "the directory is empty"),
    (["directory", "find", "+79161234567"], 1, "not in the directory"),
    (["directory", "import", "scripts/examples/directory.csv"], 0, "imported."),
    (["outbox", "list"], 0, "no ticket requests"),
    (["outbox", "flush"], 0, "REDIS_URL is not set"),
    (["outbox", "retry", "1"], 1, "no ticket request with id 1"),
    (["spool", "replay"], 0, "0 events stored"),
    (["token", "list"], 0, "no API tokens"),
    (["token", "create", "reporting"], 0, "Authorization: Bearer"),
    (["token", "revoke", "reporting"], 1, "no API token named 'reporting'"),
    (["user", "list"], 0, "no console users"),
    (["user", "create", "head", "--role", "supervisor", "--password-stdin"], 0, "created"),
    (["user", "passwd", "head", "--password-stdin"], 1, "no console user named 'head'"),
    (["purge"], 0, "0 calls anonymised"),
    (["calendar", "2026"], 0, "247"),
    (["deadline", "data_update", "--received", "2026-03-02T10:00"], 0, "resolution"),
    (["provision", "--dry-run"], 2, "provisioning needs these settings"),
    (["db", "upgrade"], 0, "database at head"),
]


def fresh_env(data_dir: Path) -> dict[str, str]:
    """A fresh clone's environment: no DATABASE_URL, no Redis, nothing in the data dir."""
    return {
        "CALLCENTER_DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "CALENDAR_OVERRIDES_FILE": "",
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
        "PUBLIC_BASE_URL": "",
    }


def run(args: list[str], env: dict[str, str]) -> Result:
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example files' paths, as in the README
    try:
        return CliRunner().invoke(
            main, args, env=env, input="Secret-pass-123456\n", catch_exceptions=False
        )
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize(
    ("args", "exit_code", "says"), FIRST_COMMANDS, ids=[" ".join(c[0]) for c in FIRST_COMMANDS]
)
def test_each_command_works_on_a_fresh_data_dir(
    args: list[str], exit_code: int, says: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    result = run(args, fresh_env(data_dir))
    assert (result.exit_code, says in result.output) == (exit_code, True), result.output
    assert "Traceback" not in result.output
    if args[0] not in ("calendar", "deadline", "provision"):
        assert (data_dir / "callcenter.db").is_file()


def test_roster_now_before_serve_as_a_real_process(tmp_path: Path) -> None:
    """The issue's case, as typed: `callcenter roster now` first thing on a fresh clone."""
    env = service_env(**fresh_env(tmp_path / "var"))
    first = run_cli(["roster", "now"], env)
    assert first.returncode == 0, first.stderr
    assert "head of support: none" in first.stdout
    assert "Traceback" not in first.stderr


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A PostgreSQL database without a single table, as before the release step."""
    name = f"cc_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("args", [["roster", "now"], ["user", "list"], ["outbox", "list"]])
def test_a_server_database_without_tables_says_what_to_run(
    args: list[str], empty_pg_database: str, tmp_path: Path
) -> None:
    env = service_env(**{**fresh_env(tmp_path), "DATABASE_URL": empty_pg_database})
    result = run_cli(args, env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: the database has no tables yet (relation ")
    assert lines[0].endswith("run `callcenter db upgrade` first")
    # Never behind the operator's back: a server database is left as it was.
    engine = create_engine(empty_pg_database)
    with engine.connect() as conn:
        tables = conn.execute(
            text("select count(*) from information_schema.tables where table_schema='public'")
        ).scalar()
    engine.dispose()
    assert tables == 0


def test_an_unreachable_server_database_is_one_line(tmp_path: Path) -> None:
    env = service_env(
        **{**fresh_env(tmp_path), "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}
    )
    result = run_cli(["roster", "now"], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: the database is not reachable: ")
    assert "Connection refused" in lines[0]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"SECRET_KEY": "chaos-secret"}, "secrets of at least 32 characters: SECRET_KEY"),
        ({"PUBLIC_BASE_URL": ""}, "production mode needs these settings: PUBLIC_BASE_URL"),
    ],
    ids=["short SECRET_KEY", "no PUBLIC_BASE_URL"],
)
def test_the_release_step_with_settings_production_refuses_is_one_line(
    settings: dict[str, str], says: str, tmp_path: Path
) -> None:
    """`callcenter db upgrade` is the release step under supervisord and systemd: what
    production is missing is one line of its log, repeated while it retries."""
    production = {
        "CALLCENTER_ENV": "production",
        "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "a-token",
        "PUBLIC_BASE_URL": "https://hotline.example.ru",
        "SECRET_KEY": "s" * 32,
        "DUTY_PHONE": "+79110000001",
    }
    env = service_env(**{**fresh_env(tmp_path), **production, **settings})
    result = run_cli(["db", "upgrade"], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and says in lines[0], lines[0]
