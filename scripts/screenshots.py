"""Regenerate the README's console screenshots in docs/screenshots/, on purpose.

The browser tests that take them (headless Chromium, the tests' sample calls) save every
picture under test-artifacts/screenshots/ (ignored by git), so a test run never changes a
tracked file. This script runs those tests and copies the README's pictures from there
into docs/screenshots/; commit the result if the pages changed.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"

# The README's pictures (tests/browser/test_console_phone.py checks the two lists agree).
PICTURES = (
    "log-1440",  # the call log on a desk
    "log-390",  # the call log on a phone: cards
    "call-1440",  # a call page (an urgent call nobody accepted)
    "call-390",  # the same on a phone
    "callbacks-1440",  # the call-back queue, the first item taken
    "callbacks-390",  # the same on a phone
)
TESTS = (
    "tests/browser/test_console_phone.py"
    "::test_the_log_on_a_phone_is_cards_and_the_desk_keeps_its_table",
    "tests/browser/test_callbacks_browser.py::test_the_queue_fits_the_screen_and_is_worked_from_it",
)


def main() -> int:
    for name in PICTURES:  # a picture left by an earlier run must not pass for a new one
        (ARTIFACTS / f"{name}.png").unlink(missing_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "--no-cov", "-q", "-p", "no:randomly"]
        + ["-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        check=False,
    )
    if run.returncode != 0:
        print("the browser tests failed: docs/screenshots/ left as it was", file=sys.stderr)
        return run.returncode
    missing = [name for name in PICTURES if not (ARTIFACTS / f"{name}.png").exists()]
    if missing:
        print(f"the tests did not save {', '.join(missing)}", file=sys.stderr)
        return 1
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in PICTURES:
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")
        print(f"docs/screenshots/{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
