"""Known incidents: a failure that hits many clients at once, tracked on one ticket.

    store.py      open (declared, or detected) / close / list; a call joining one
    detection.py  a surge of critical-failure calls opens one by itself
    followups.py  what an incident sends, by a job: detected alerts, the digest, the
                  closing entry and the resolution SMS
    texts.py      the SMS and ticket texts

While one is open, the IVR announces it in the first <Gather> (`callcenter.ivr.engine`);
a caller who presses 1 is recorded as a phone duplicate on its ticket and rings nobody.
"""
