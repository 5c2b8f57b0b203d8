"""Prefect flows: what runs when. Each is thin: it batches, schedules and reports, and calls the use
cases in `clerk.service` for how."""
