"""Call recordings, the auditors' case reviews and verdicts, and evidence retention.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create recordings, case_reviews, review_verdicts; mark deleted evidence."""
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("offset_ms", sa.Integer(), nullable=False),
        sa.Column("clock_zero", sa.DateTime(timezone=True), nullable=False),
        sa.Column("video_frames", sa.Integer(), nullable=False),
        sa.Column("audio_frames", sa.Integer(), nullable=False),
        sa.Column("dropped_frames", sa.Integer(), nullable=False),
        sa.Column("recovered", sa.Boolean(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("case_id", "side", name="uq_recordings_case_side"),
    )
    op.create_index("ix_recordings_case_id", "recordings", ["case_id"])
    op.create_table(
        "case_reviews",
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("first_auditor_id", sa.Integer(), sa.ForeignKey("staff.id"), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_case_reviews_state", "case_reviews", ["state"])
    op.create_table(
        "review_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("auditor_id", sa.Integer(), sa.ForeignKey("staff.id"), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("state_after", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_review_verdicts_case_id", "review_verdicts", ["case_id"])
    with op.batch_alter_table("verification_attempts") as batch:
        batch.add_column(
            sa.Column("evidence_deleted_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("verification_attempts") as batch:
        batch.drop_column("evidence_deleted_at")
    op.drop_index("ix_review_verdicts_case_id", "review_verdicts")
    op.drop_table("review_verdicts")
    op.drop_index("ix_case_reviews_state", "case_reviews")
    op.drop_table("case_reviews")
    op.drop_index("ix_recordings_case_id", "recordings")
    op.drop_table("recordings")
