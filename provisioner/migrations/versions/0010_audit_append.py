"""PostgreSQL: chain and insert a transaction's audit events in one round trip.

Migration 0009 took the chain's lock and read its head in one statement, but the events
still went in with a second one, because their hashes were computed in Python from that
head. `audit_append` does all three: it calls `audit_chain_head` (the lock, then the head
with a fresh snapshot, as 0009 explains), then hashes and inserts each event in order.

The hash is unchanged, so existing chains still verify: Python serialises each event
exactly as `provisioner.audit.service.event_digest` always did, split around the value of
its "prev" key (`body_heads[i]`, `body_tails[i]`); the function only puts the previous
hash between the two halves and takes the SHA-256 of the ASCII text. `details_json[i]` is
the details as SQLAlchemy's JSON type would have stored them. SQLite has one writer and no
round trips; it keeps the Python path.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION audit_append(
            lock_id bigint,
            occurred timestamptz[],
            actors text[],
            actions text[],
            target_types text[],
            target_ids text[],
            details_json text[],
            body_heads text[],
            body_tails text[]
        ) RETURNS text
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            prev text := coalesce(audit_chain_head(lock_id), repeat('0', 64));
            digest text;
        BEGIN
            FOR i IN 1 .. coalesce(cardinality(actors), 0) LOOP
                digest := encode(
                    sha256(convert_to(body_heads[i] || prev || body_tails[i], 'UTF8')), 'hex'
                );
                INSERT INTO audit_events
                    (occurred_at, actor, action, target_type, target_id, details,
                     prev_hash, hash)
                VALUES
                    (occurred[i], actors[i], actions[i], target_types[i], target_ids[i],
                     details_json[i]::json, prev, digest);
                prev := digest;
            END LOOP;
            RETURN prev;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS audit_append("
        "bigint, timestamptz[], text[], text[], text[], text[], text[], text[], text[])"
    )
