"""The call log as supervisors read it: query, JSON, timeline, review rules, figures, CSV."""
