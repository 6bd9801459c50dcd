"""The store: SQLModel tables, engine setup and queries (see ``engine`` for why WAL)."""
