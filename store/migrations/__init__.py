"""Alembic migrations of the CloudBranch schema (applied by ``store.db.open_database``)."""
