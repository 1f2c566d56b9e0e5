"""Join details (links, passcodes) sealed for storage and opened for the host or a delivery.

The associated data names the table and row, so a sealed value copied into another row
does not open there.
"""

from __future__ import annotations

import json

from provisioner.crypto import FieldCipher
from provisioner.providers.base import JoinDetails


def _context(table: str, row_id: str) -> str:
    return f"{table}:{row_id}:join"


def seal_join(cipher: FieldCipher, join: JoinDetails, *, table: str, row_id: str) -> str:
    payload = json.dumps({"url": join.url, "passcode": join.passcode})
    return cipher.encrypt(payload, context=_context(table, row_id))


def open_join(cipher: FieldCipher, sealed: str, *, table: str, row_id: str) -> JoinDetails:
    data = json.loads(cipher.decrypt(sealed, context=_context(table, row_id)))
    return JoinDetails(url=data["url"], passcode=data["passcode"])
