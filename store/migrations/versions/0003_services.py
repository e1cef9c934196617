"""The four services: card and customer columns, U-keys, SMS outbox, grants, approvals, phone
one-time codes and the append-only audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The only dialect-specific SQL is the trigger that makes ``audit_events`` append-only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = "audit_events is append-only"

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END""",
)
_PG_TRIGGERS = (
    f"""CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$""",
    """CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
)


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _fk(name: str, target: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), sa.ForeignKey(target), nullable=nullable)


def _alter_customer_records() -> None:
    op.add_column("customers", sa.Column("cooling_off_until", _tz(), nullable=True))
    # SQLite cannot add a foreign key in place: batch mode copies the table there.
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("blocked_at", _tz(), nullable=True))
        batch.add_column(sa.Column("replaces_card_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_cards_replaces_card_id", "cards", ["replaces_card_id"], ["id"])


def _create_ukeys_and_outbox() -> None:
    op.create_table(
        "ukeys",
        _id(),
        _fk("customer_id", "customers.id"),
        sa.Column("serial", sa.String(32), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("failed_tries", sa.Integer(), nullable=False),
        sa.Column("updated_at", _tz(), nullable=False),
    )
    op.create_index("ix_ukeys_customer_id", "ukeys", ["customer_id"])
    op.create_table(
        "notifications",
        _id(),
        _fk("customer_id", "customers.id", nullable=True),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
    )


def _create_authorisation() -> None:
    op.create_table(
        "grants",
        _id(),
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        _fk("case_id", "cases.id"),
        _fk("customer_id", "customers.id"),
        sa.Column("service", sa.String(32), nullable=False),
        _fk("attempt_id", "verification_attempts.id"),
        _fk("confirmed_by", "staff.id"),
        _fk("approved_by", "staff.id", nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("used_at", _tz(), nullable=True),
        sa.Column("revoked_at", _tz(), nullable=True),
    )
    op.create_index("ix_grants_case_id", "grants", ["case_id"])
    op.create_table(
        "approvals",
        _id(),
        _fk("case_id", "cases.id"),
        _fk("attempt_id", "verification_attempts.id"),
        sa.Column("service", sa.String(32), nullable=False),
        _fk("requested_by", "staff.id"),
        sa.Column("requested_at", _tz(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _fk("decided_by", "staff.id", nullable=True),
        sa.Column("decided_at", _tz(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_approvals_case_id", "approvals", ["case_id"])
    op.create_index("ix_approvals_state", "approvals", ["state"])
    op.create_table(
        "phone_otps",
        _id(),
        _fk("case_id", "cases.id"),
        _fk("grant_id", "grants.id"),
        _fk("customer_id", "customers.id"),
        sa.Column("new_phone", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(256), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("wrong_tries", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index("ix_phone_otps_case_id", "phone_otps", ["case_id"])


def _create_audit_log() -> None:
    op.create_table(
        "audit_events",
        _id(),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_events_case_id", "audit_events", ["case_id", "id"])
    dialect = op.get_bind().dialect.name
    statements: tuple[str, ...]
    if dialect == "sqlite":
        statements = _SQLITE_TRIGGERS
    elif dialect == "postgresql":
        statements = _PG_TRIGGERS
    else:
        raise NotImplementedError(f"no append-only trigger for {dialect}")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    """Add the service tables and columns, and make the audit log append-only."""
    _alter_customer_records()
    _create_ukeys_and_outbox()
    _create_authorisation()
    _create_audit_log()


def downgrade() -> None:
    """Drop what ``upgrade`` added (the audit log too: a downgrade is for development only)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")
        op.drop_table("audit_events")
    for table in ("phone_otps", "approvals", "grants", "notifications", "ukeys"):
        op.drop_table(table)  # their indexes go with them
    with op.batch_alter_table("cards") as batch:
        batch.drop_constraint("fk_cards_replaces_card_id", type_="foreignkey")
        batch.drop_column("replaces_card_id")
        batch.drop_column("blocked_at")
    op.drop_column("customers", "cooling_off_until")
