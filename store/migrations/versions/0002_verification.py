"""Face templates, verification attempts and verification locks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the verification tables."""
    op.create_table(
        "reference_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("model_key", sa.String(160), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("crop_blob_key", sa.String(64), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "model_key"),
    )
    op.create_index("ix_reference_templates_customer_id", "reference_templates", ["customer_id"])
    op.create_table(
        "verification_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("advisor_id", sa.Integer(), sa.ForeignKey("staff.id"), nullable=True),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("challenges", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("scores", sa.Text(), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=True),
        sa.Column("evidence_blob_key", sa.String(64), nullable=True),
        sa.Column("best_frame_blob_key", sa.String(64), nullable=True),
        sa.Column("started_at", _tz(), nullable=False),
        sa.Column("ended_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_verification_attempts_case_id", "verification_attempts", ["case_id"])
    op.create_index(
        "ix_verification_attempts_customer_at",
        "verification_attempts",
        ["customer_id", "started_at"],
    )
    op.create_table(
        "verification_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("locked_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id"),
    )


def downgrade() -> None:
    """Drop the verification tables."""
    op.drop_table("verification_locks")
    op.drop_index("ix_verification_attempts_customer_at", "verification_attempts")
    op.drop_index("ix_verification_attempts_case_id", "verification_attempts")
    op.drop_table("verification_attempts")
    op.drop_index("ix_reference_templates_customer_id", "reference_templates")
    op.drop_table("reference_templates")
