"""`callcenter calendar` and `callcenter deadline`, run as the real `callcenter` command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from callcenter.cli import main
from callcenter.db.models import Organisation
from callcenter.services import Services
from tests.test_calendar import OFFICIAL_CALENDARS


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment of the command's own: nothing from the developer's shell or ./var."""
    return {
        "CALLCENTER_DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'cli.db'}",
        "CALENDAR_OVERRIDES_FILE": "",
    }


def run(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


@pytest.mark.parametrize("year", sorted(OFFICIAL_CALENDARS))
def test_calendar_json_is_the_official_calendar(year: int, env: dict[str, str]) -> None:
    result = run(["calendar", str(year), "--json"], env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"year": year, **OFFICIAL_CALENDARS[year]}
    assert result.stderr == ""


def test_calendar_table_is_readable(env: dict[str, str]) -> None:
    result = run(["calendar", "2025"], env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Production calendar 2025 (Russia, five-day week)"
    assert "№ 1335" in result.stdout
    rows = {line.split()[0]: line.split() for line in lines if line.split()}
    assert rows["January"] == ["January", "17", "136", "1,", "2,", "3,", "6,", "7,", "8"]
    assert rows["November"] == ["November", "19", "151", "3,", "4", "1", "1"]
    assert rows["Year"] == ["Year", "247", "1972", "15", "1", "4"]


def test_a_year_without_short_day_data_says_so(env: dict[str, str]) -> None:
    result = run(["calendar", "2027", "--json"], env)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["short_days"] == []
    assert "no data on 2027's shortened pre-holiday days" in result.stderr


def test_calendar_reads_the_operators_overrides_file(env: dict[str, str], tmp_path: Path) -> None:
    overrides = tmp_path / "decree-2027.yaml"
    overrides.write_text(
        "years:\n  2027:\n    decree: test\n    short_days: [2027-04-30, 2027-06-11]\n",
        encoding="utf-8",
    )
    result = run(["calendar", "2027", "--json"], {**env, "CALENDAR_OVERRIDES_FILE": str(overrides)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["short_days"] == ["2027-04-30", "2027-06-11"]
    assert result.stderr == ""


def test_a_bad_overrides_file_stops_the_command_with_its_reason(
    env: dict[str, str], tmp_path: Path
) -> None:
    overrides = tmp_path / "bad.yaml"
    overrides.write_text("years:\n  2027:\n    days_off: [2027-02-30]\n", encoding="utf-8")
    result = run(["calendar", "2027"], {**env, "CALENDAR_OVERRIDES_FILE": str(overrides)})
    assert result.exit_code == 1
    assert "bad date '2027-02-30'" in result.stderr and str(overrides) in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["consultation", "--received", "2025-12-01T11:00:00+03:00"],
            {
                "topic": "consultation",
                "received": "2025-12-01T11:00+03:00",
                "first_stage_due": "2025-12-02T11:00+03:00",
                "resolution_due": "2025-12-08T11:00+03:00",
            },
        ),
        (
            ["accounts_access", "--received", "2025-11-30T10:00"],
            {
                "topic": "accounts_access",
                "received": "2025-11-30T10:00+03:00",
                "first_stage_due": "2025-12-01T18:00+03:00",
                "resolution_due": "2025-12-02T18:00+03:00",
            },
        ),
        (
            ["critical_server_failure", "--received", "2025-12-30T07:00Z"],
            {
                "topic": "critical_server_failure",
                "received": "2025-12-30T10:00+03:00",
                "first_stage_due": "2026-01-12T10:00+03:00",
                "resolution_due": "2026-01-12T10:00+03:00",
            },
        ),
        (
            ["remote_diagnostics", "--received", "2025-12-01T11:00:30", "--vehicles", "6"],
            {
                "topic": "remote_diagnostics",
                "received": "2025-12-01T11:00:30+03:00",
                "first_stage_due": "2025-12-02T11:00:30+03:00",
                "resolution_due": None,
            },
        ),
    ],
)
def test_deadline_prints_json_in_moscow_time(
    args: list[str], expected: dict[str, object], env: dict[str, str]
) -> None:
    result = run(["deadline", *args], env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["printer", "--received", "2025-12-01T11:00"], "unknown topic 'printer'"),
        (["consultation", "--received", "2025-13-01T11:00"], "'2025-13-01T11:00' is not an ISO"),
        (["consultation", "--received", "yesterday"], "'yesterday' is not an ISO 8601"),
        (["consultation"], "Missing option '--received'"),
        (["consultation", "--received", "2025-12-01T11:00", "--org", "x"], "'x' is not a valid"),
    ],
)
def test_deadline_refuses_bad_input_with_exit_code_2(
    args: list[str], message: str, env: dict[str, str]
) -> None:
    result = run(["deadline", *args], env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_deadline_uses_the_organisations_contract(
    services: Services, database_url: str, env: dict[str, str]
) -> None:
    with Session(services.engine) as session, session.begin():
        org = Organisation(
            name="ООО «Ромашка»",
            stage_one_days=2,
            topic_days={"consultation": 10},
            created_at=datetime(2025, 11, 1, tzinfo=UTC),
        )
        session.add(org)
        session.flush()
        org_id = org.id
    db_env = {**env, "DATABASE_URL": database_url}
    result = run(
        ["deadline", "consultation", "--received", "2025-12-01T11:00", "--org", str(org_id)],
        db_env,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "topic": "consultation",
        "received": "2025-12-01T11:00+03:00",
        "first_stage_due": "2025-12-03T11:00+03:00",
        "resolution_due": "2025-12-15T11:00+03:00",
    }
    # The same organisation on a topic its contract does not name: the regulation's 2 days.
    result = run(
        ["deadline", "data_update", "--received", "2025-12-01T11:00", "--org", str(org_id)],
        db_env,
    )
    assert json.loads(result.stdout)["resolution_due"] == "2025-12-03T11:00+03:00"

    missing = run(
        ["deadline", "consultation", "--received", "2025-12-01T11:00", "--org", str(org_id + 1)],
        db_env,
    )
    assert missing.exit_code == 2
    assert f"no organisation with id {org_id + 1}" in missing.stderr
