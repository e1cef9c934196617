"""The advisor's review of a verification attempt, and the outcome (receipt) of a case.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the review columns and the case outcome."""
    with op.batch_alter_table("verification_attempts") as batch:
        batch.add_column(sa.Column("review", sa.String(16), nullable=True))
        batch.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "reviewed_by",
                sa.Integer(),
                sa.ForeignKey("staff.id", name="fk_verification_attempts_reviewed_by"),
                nullable=True,
            )
        )
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("outcome", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("outcome")
    with op.batch_alter_table("verification_attempts") as batch:
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewed_by")
        batch.drop_column("review_reason")
        batch.drop_column("review")
