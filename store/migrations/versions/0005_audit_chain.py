"""Hash-chained audit log: seq, prev_hash and hash on every event, and signed checkpoints.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Existing events are chained in the order of their ids. The 0003 triggers refuse UPDATE, so they
are dropped around the backfill and created again (the whole migration is one transaction).
The hash itself comes from ``store.chain``: the migration must write exactly what
``cloudbranch audit verify`` recomputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from store.chain import GENESIS, ChainEvent, event_hash

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500
_TABLES = ("audit_events", "audit_checkpoints")


def _sqlite_triggers(table: str) -> tuple[str, ...]:
    return tuple(
        f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
        for verb in ("UPDATE", "DELETE")
    )


# audit_events keeps the function made by 0003; audit_checkpoints gets one of its own.
_PG_EVENT_TRIGGER = """CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"""
_PG_CHECKPOINT_TRIGGERS = (
    """CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_checkpoints is append-only'; END $$""",
    """CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only()""",
    """CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only()""",
)

_events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor_kind", sa.String()),
    sa.column("actor_id", sa.Integer()),
    sa.column("case_id", sa.Integer()),
    sa.column("grant_id", sa.Integer()),
    sa.column("action", sa.String()),
    sa.column("outcome", sa.String()),
    sa.column("detail", sa.Text()),
    sa.column("seq", sa.Integer()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _dialect() -> str:
    name = op.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"no append-only trigger for {name}")
    return name


def _drop_event_triggers() -> None:
    if _dialect() == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_update_delete ON audit_events")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")


def _create_event_triggers() -> None:
    if _dialect() == "postgresql":
        op.execute(_PG_EVENT_TRIGGER)
    else:
        for statement in _sqlite_triggers("audit_events"):
            op.execute(statement)


def _chain_batch(rows: Sequence[sa.Row[Any]], seq: int, prev: str) -> list[dict[str, Any]]:
    """The new columns of ``rows`` (in id order), which follow event ``seq`` of hash ``prev``."""
    values = []
    for row in rows:
        seq += 1
        fields = {k: v for k, v in row._asdict().items() if k != "id"}
        link = event_hash(prev, ChainEvent(seq=seq, prev_hash=prev, **fields))
        values.append({"row_id": row.id, "b_seq": seq, "b_prev": prev, "b_hash": link})
        prev = link
    return values


def _backfill() -> None:
    """Chain the existing events in the order of their ids, a batch at a time."""
    bind = op.get_bind()
    columns = [c for c in _events.c if c.name not in ("seq", "prev_hash", "hash")]
    update = (
        _events.update()
        .where(_events.c.id == sa.bindparam("row_id"))
        .values(
            seq=sa.bindparam("b_seq"), prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash")
        )
    )
    last_id, seq, prev = 0, 0, GENESIS
    while True:
        query = sa.select(*columns).where(_events.c.id > last_id).order_by(_events.c.id)
        rows = bind.execute(query.limit(_BATCH)).all()
        if not rows:
            return
        values = _chain_batch(rows, seq, prev)
        bind.execute(update, values)
        last_id, seq, prev = rows[-1].id, values[-1]["b_seq"], values[-1]["b_hash"]


def _create_checkpoints() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_audit_checkpoints_seq", "audit_checkpoints", ["seq"])
    statements: tuple[str, ...]
    if _dialect() == "postgresql":
        statements = _PG_CHECKPOINT_TRIGGERS
    else:
        statements = _sqlite_triggers("audit_checkpoints")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    """Add and backfill the chain columns, index ``seq``, add the checkpoints table."""
    _drop_event_triggers()
    op.add_column("audit_events", sa.Column("seq", sa.Integer(), nullable=True))
    op.add_column("audit_events", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("audit_events", sa.Column("hash", sa.String(64), nullable=True))
    _backfill()
    # SQLite cannot make a column NOT NULL in place: batch mode copies the table there.
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
    op.create_index("ix_audit_events_seq", "audit_events", ["seq"], unique=True)
    _create_event_triggers()
    _create_checkpoints()


def downgrade() -> None:
    """Drop the checkpoints and the chain columns; the events themselves stay."""
    if _dialect() == "postgresql":
        op.execute("DROP TABLE audit_checkpoints")  # its triggers go with it
        op.execute("DROP FUNCTION audit_checkpoints_append_only()")
    else:
        op.execute("DROP TRIGGER audit_checkpoints_no_update")
        op.execute("DROP TRIGGER audit_checkpoints_no_delete")
        op.drop_table("audit_checkpoints")
    _drop_event_triggers()
    op.drop_index("ix_audit_events_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    _create_event_triggers()
