"""A meeting remembers the calendar integration that created it on the host's behalf, so
that integration can read, reschedule, cancel and end what it made.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_by", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ix_meetings_requested_by_created", ["requested_by", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_requested_by_created")
        batch_op.drop_column("requested_by")
