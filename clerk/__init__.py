"""query-clerk: the application layer (settings, database, use cases, audit trail, CLI)."""
