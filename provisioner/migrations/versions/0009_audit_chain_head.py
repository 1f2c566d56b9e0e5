"""PostgreSQL: take the audit chain's lock and read its head in one round trip.

Each audited transaction used to send `SELECT pg_advisory_xact_lock(...)` and then read
the newest event's hash: two round trips. `audit_chain_head(lock_id)` does both. It is
VOLATILE, so its SELECT runs with a snapshot taken after the lock was granted (PostgreSQL
gives each query in a VOLATILE function a fresh snapshot): it sees the event the previous
holder of the lock committed, which one statement doing both could not (its snapshot would
predate the wait). SQLite has one writer and needs neither.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_chain_head(lock_id bigint) RETURNS text
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_id);
            RETURN (SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1);
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS audit_chain_head(bigint)")
