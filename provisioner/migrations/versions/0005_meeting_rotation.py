"""A rotated meeting points at the one it replaced, so old and new stay linked; the
attendance watcher remembers which unknown participants it has already reported.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotated_from_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_meetings_rotated_from_id", ["rotated_from_id"])
    op.create_table(
        "attendance_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("participant_key", sa.String(length=255), nullable=False),
        sa.Column("participant_name", sa.String(length=200), nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("meeting_id", "participant_key"),
    )


def downgrade() -> None:
    op.drop_table("attendance_alerts")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_rotated_from_id")
        batch_op.drop_column("rotated_from_id")
