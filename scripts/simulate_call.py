#!/usr/bin/env python3
"""Play one call against the running service, as Twilio would (same as `callcenter simulate`).

scripts/simulate_call.py --press 2 1 3 --say "А123ВС77"
"""

from __future__ import annotations

from callcenter.cli.simulate import simulate

if __name__ == "__main__":
    simulate(prog_name="simulate_call.py")
