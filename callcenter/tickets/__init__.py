"""The ticket pipeline: intake, the outbox, jobs, follow-ups and notifications."""
