"""The store: the database engine and sessions (`db`), the case lock every writer takes first (`locks`),
the append-only audit trail (`audit`), and the schema's migrations (`migrations`)."""
