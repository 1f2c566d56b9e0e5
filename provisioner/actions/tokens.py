"""The URL form of an action link: `pal.<id as 32 hex>.<HMAC-SHA256, base64url>`.

The id names the row (which holds the meeting, host, action and expiry); the MAC proves
the service minted it, so ids cannot be guessed or enumerated. The key is derived from the
data keys (`FieldCipher.derive_keys`), so nothing new has to be provisioned and the worker
can re-derive the same URL when it renders the host's copy again. The `pal.` prefix lets
the log redactor recognise a token wherever it turns up (an access log line, say).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence

from provisioner.crypto import FieldCipher

PURPOSE = "provisioner action link v1"
_TOKEN = re.compile(r"^pal\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


class ActionLinkSigner:
    """Signs link ids with the first key and accepts a MAC made with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed to sign action links")
        self._keys = tuple(keys)

    @classmethod
    def from_cipher(cls, cipher: FieldCipher) -> ActionLinkSigner:
        return cls(cipher.derive_keys(PURPOSE))

    def token(self, link_id: str) -> str:
        """The URL token for the row `link_id` (a UUID)."""
        hex_id = uuid.UUID(link_id).hex
        return f"pal.{hex_id}.{_mac(self._keys[0], hex_id)}"

    def link_id(self, token: str) -> str | None:
        """The row id `token` names, or None if it is malformed or its MAC is wrong."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        hex_id, mac = match.groups()
        if not any(hmac.compare_digest(mac, _mac(key, hex_id)) for key in self._keys):
            return None
        return str(uuid.UUID(hex_id))


def _mac(key: bytes, hex_id: str) -> str:
    digest = hmac.new(key, hex_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
