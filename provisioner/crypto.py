"""Encryption at rest for secrets we must keep: passcodes, join links, replayed responses.

AES-256-GCM with a random 96-bit nonce. Each ciphertext names its key id, so keys can be
rotated: the active key encrypts, every configured key decrypts. The associated data binds
a ciphertext to the row and column it belongs to, so a value copied into another row does
not decrypt there.

Format: ``v1.<key id>.<base64url nonce>.<base64url ciphertext+tag>``.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from provisioner.settings import SecuritySettings

_VERSION = "v1"


class CipherError(Exception):
    """A ciphertext could not be decrypted (unknown key, tampered, or wrong row)."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FieldCipher:
    """Encrypts and decrypts single column values."""

    def __init__(self, keys: Mapping[str, bytes], *, active: str) -> None:
        if active not in keys:
            raise ValueError(f"active key {active!r} is not among the configured keys")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"data key {key_id!r} must be 32 bytes (base64 of 32 bytes)")
            if "." in key_id:
                raise ValueError(f"data key id {key_id!r} must not contain '.'")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active
        # Per-purpose MAC keys are derived from these (never used directly for anything else).
        self._raw = dict(keys)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._active].encrypt(nonce, plaintext.encode(), context.encode())
        return ".".join((_VERSION, self._active, _b64e(nonce), _b64e(sealed)))

    def decrypt(self, token: str, *, context: str) -> str:
        try:
            version, key_id, nonce, sealed = token.split(".")
        except ValueError:
            raise CipherError("malformed ciphertext") from None
        if version != _VERSION or key_id not in self._keys:
            raise CipherError(f"no key {key_id!r} to decrypt with")
        try:
            return (
                self._keys[key_id].decrypt(_b64d(nonce), _b64d(sealed), context.encode()).decode()
            )
        except InvalidTag:
            raise CipherError("ciphertext does not authenticate for this row") from None

    def derive_keys(self, purpose: str) -> list[bytes]:
        """32-byte keys for `purpose` (HKDF-SHA256 of each data key), the active one first.

        Signing with the first and verifying against all of them lets a signed value
        (an emergency action link) survive a data-key rotation, as ciphertexts do, while
        a key for one purpose can never verify or decrypt anything of another.
        """
        order = [self._active, *sorted(k for k in self._raw if k != self._active)]
        return [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
                self._raw[key_id]
            )
            for key_id in order
        ]


def cipher_from_settings(settings: SecuritySettings, *, development: bool) -> FieldCipher:
    """Build the cipher from configured keys, or (development only) a generated key file."""
    if settings.data_keys:
        keys = {
            key_id: _b64d(value.get_secret_value().strip())
            for key_id, value in settings.data_keys.items()
        }
        active = settings.active_key or sorted(keys)[-1]
        return FieldCipher(keys, active=active)
    if not development:
        raise ValueError("security.data_keys must be configured outside development")
    path = settings.data_key_file
    if not path.exists():
        _create_key_file(path)
    return FieldCipher({"dev": _b64d(Path(path).read_text().strip())}, active="dev")


def _create_key_file(path: Path) -> None:
    """Write a new key so that no other process can ever read it half-written.

    Several processes (API and workers) may start at once on a fresh machine: the key is
    written to a private temporary file and then hard-linked into place, which either
    succeeds whole or finds that another process won the race (then its key is used).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(_b64e(secrets.token_bytes(32)))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    finally:
        temporary.unlink(missing_ok=True)
