"""Processes that share one fallback spool, for `tests/test_spool.py`:

    python -m tests.spool_actors write WRITER COUNT GO_FILE
        append COUNT fallback events (ids `wWRITER-N`, over CALLS calls) as a web process
        does when the database is down, once GO_FILE exists
    python -m tests.spool_actors replay GO_FILE STOP_FILE
        replay the spool again and again, as a sweep does, from GO_FILE on; once STOP_FILE
        exists, until nothing is left in the spool (no spool, no claims); prints its
        "stored left" per replay that found something

Settings come from the environment (DATABASE_URL, CALLCENTER_DATA_DIR), as the service's.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

CALLS = 12


def event_call_sid(number: int) -> str:
    return f"CA{number % CALLS:032d}"


def wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.005)


def write(writer: int, count: int, go: Path) -> None:
    from callcenter.ivr.spool import fallback_record, spool
    from callcenter.settings import Settings

    data_dir = Settings.from_env().data_dir
    print("ready", flush=True)
    wait_for(go)
    for number in range(count):
        form = {
            "CallSid": event_call_sid(number),
            "From": "+79161234567",
            "To": "+78002506077",
            "ErrorCode": "11200",
        }
        record = fallback_record("fallback", form, datetime.now(UTC))
        record["id"] = f"w{writer}-{number}"
        spool(data_dir, record)
        time.sleep(0.005)  # a burst spread over a second or so, as calls come


def replay(go: Path, stop: Path) -> None:
    from callcenter.ivr.spool import replay_spool, spool_files
    from callcenter.services import Services
    from callcenter.settings import Settings

    services = Services.from_settings(Settings.from_env())
    print("ready", flush=True)
    wait_for(go)
    try:
        while True:
            writers_done = stop.exists()
            stored, left = replay_spool(services)
            if stored or left:
                print(stored, left, flush=True)
            elif writers_done and not any(
                p.exists() for p in spool_files(services.settings.data_dir)
            ):
                return
            time.sleep(0.005)
    finally:
        services.close()


def main(argv: list[str]) -> None:
    if argv[0] == "write":
        write(int(argv[1]), int(argv[2]), Path(argv[3]))
    elif argv[0] == "replay":
        replay(Path(argv[1]), Path(argv[2]))
    else:
        raise SystemExit(f"unknown actor {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
