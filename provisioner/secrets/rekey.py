"""Re-encrypt every sealed column under a new data key, online.

Why it is safe to run while the service serves: every configured key keeps decrypting
during the run, so a row is readable whether or not it has been re-encrypted yet; each batch
is its own short transaction; and each row is updated only if it still holds the
ciphertext we read (`WHERE column = old`), so a row the app re-sealed meanwhile (already
under the new active key) is left alone. Rows already under the new key are skipped, so an
interrupted run is simply run again. A row that no configured key opens is counted and
reported, never overwritten.

The associated data of each column must match the one its writer uses
(`meetings/joins.py`, `idempotency/service.py`); the round-trip tests hold them together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Column, Table, select, update

from provisioner.audit.service import record_event
from provisioner.crypto import CipherError, FieldCipher
from provisioner.db import Database
from provisioner.idempotency.models import IdempotencyKey
from provisioner.meetings.models import Invitee, Meeting

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """One column holding `FieldCipher` ciphertext, and how its row builds the context."""

    table: Table
    column: str
    context: Callable[[Any], str]

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column}"


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # noqa: S101
    return table


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(_table(Meeting), "host_join_secret", lambda row_id: f"meetings:{row_id}:join"),
    SealedColumn(_table(Invitee), "join_secret", lambda row_id: f"invitees:{row_id}:join"),
    SealedColumn(
        _table(IdempotencyKey),
        "response_secret",
        lambda row_id: f"idempotency_keys:{row_id}:response",
    ),
)


@dataclass
class RekeyReport:
    """Counts per column: re-encrypted, already under the key, changed meanwhile, unreadable."""

    key_id: str
    rotated: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    raced: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[dict[str, object]]:
        """Per-column counts as a list: column names contain "secret", and the redaction
        backstop would blank values stored under such keys in logs and audit details."""
        return [
            {
                "column": column,
                "rotated": count,
                "changed_meanwhile": self.raced[column],
                "unreadable": self.unreadable[column],
            }
            for column, count in self.rotated.items()
        ]

    @property
    def complete(self) -> bool:
        return not any(self.unreadable.values())


async def rekey_all(
    db: Database,
    *,
    cipher: FieldCipher,
    key_id: str,
    actor: str,
    batch_size: int = 200,
    columns: tuple[SealedColumn, ...] = SEALED_COLUMNS,
) -> RekeyReport:
    """Re-encrypt every sealed value not yet under `key_id` (which must be the cipher's
    active key), batch by batch, and audit the run.

    Raises:
        ValueError: `key_id` is not the cipher's active key.
    """
    probe = cipher.encrypt("probe", context="rekey")
    if probe.split(".")[1] != key_id:
        raise ValueError(f"key {key_id!r} is not the active data key")
    async with db.session() as session:
        await record_event(
            session,
            actor=actor,
            action="secrets.rekey_started",
            target_type="data_key",
            target_id=key_id,
            details={"columns": [c.label for c in columns]},
        )
    report = RekeyReport(key_id=key_id)
    for sealed in columns:
        await _rekey_column(
            db, sealed, cipher=cipher, key_id=key_id, batch=batch_size, report=report
        )
    async with db.session() as session:
        await record_event(
            session,
            actor=actor,
            action="secrets.rekey_finished",
            target_type="data_key",
            target_id=key_id,
            details={"columns": report.rows()},
        )
    log.info("secrets.rekey.finished", key_id=key_id, columns=report.rows())
    return report


async def _rekey_column(
    db: Database,
    sealed: SealedColumn,
    *,
    cipher: FieldCipher,
    key_id: str,
    batch: int,
    report: RekeyReport,
) -> None:
    table = sealed.table
    ident: Column[Any] = next(iter(table.primary_key.columns))
    value: Column[Any] = table.c[sealed.column]
    prefix = f"v1.{key_id}."
    counts = {"rotated": 0, "unreadable": 0, "raced": 0}
    last: Any = None
    while True:
        async with db.session() as session:
            query = select(ident, value).where(value.is_not(None), ~value.startswith(prefix))
            if last is not None:
                query = query.where(ident > last)
            rows = (await session.execute(query.order_by(ident).limit(batch))).all()
            if not rows:
                break
            for row_id, token in rows:
                try:
                    plain = cipher.decrypt(token, context=sealed.context(row_id))
                except CipherError:
                    counts["unreadable"] += 1
                    log.warning("secrets.rekey.unreadable", column=sealed.label, row_id=row_id)
                    continue
                fresh = cipher.encrypt(plain, context=sealed.context(row_id))
                result = await session.execute(
                    update(table).where(ident == row_id, value == token).values({value: fresh})
                )
                counts["rotated" if result.rowcount == 1 else "raced"] += 1  # type: ignore[attr-defined]
            last = rows[-1][0]
        log.info("secrets.rekey.batch_done", column=sealed.label, **counts)
    report.rotated[sealed.label] = counts["rotated"]
    report.unreadable[sealed.label] = counts["unreadable"]
    report.raced[sealed.label] = counts["raced"]
