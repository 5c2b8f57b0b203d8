"""Simulators of every registry kind: ASGI apps serving the real wire formats over real HTTP, with their
own ledger, idempotency keys, credentials and seeded, reproducible fault injection."""
