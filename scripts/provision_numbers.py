#!/usr/bin/env python3
"""Point the hotline's Twilio numbers at this service: `callcenter provision` by another
name, for operators who look in scripts/. Settings come from the environment.

    scripts/provision_numbers.py [--dry-run]
"""

from __future__ import annotations

from callcenter.cli.provision import provision

if __name__ == "__main__":
    provision(prog_name="provision_numbers.py")
