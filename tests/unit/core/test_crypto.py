"""Field encryption: round trip, key rotation, and refusal of moved or tampered values."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from provisioner.crypto import CipherError, FieldCipher, cipher_from_settings
from provisioner.settings import SecuritySettings


def key() -> bytes:
    return os.urandom(32)


class TestFieldCipher:
    def test_round_trip_and_no_plaintext(self) -> None:
        cipher = FieldCipher({"a": key()}, active="a")
        sealed = cipher.encrypt("https://meet/x?jwt=secret", context="meetings:1:join")
        assert "secret" not in sealed
        assert cipher.decrypt(sealed, context="meetings:1:join") == "https://meet/x?jwt=secret"

    def test_value_moved_to_another_row_does_not_open(self) -> None:
        cipher = FieldCipher({"a": key()}, active="a")
        sealed = cipher.encrypt("p", context="invitees:1:join")
        with pytest.raises(CipherError):
            cipher.decrypt(sealed, context="invitees:2:join")

    def test_tampered_value_does_not_open(self) -> None:
        cipher = FieldCipher({"a": key()}, active="a")
        sealed = cipher.encrypt("p", context="c")
        head, tail = sealed.rsplit(".", 1)
        flipped = tail[:-2] + ("A" if tail[-2] != "A" else "B") + tail[-1]
        with pytest.raises(CipherError):
            cipher.decrypt(f"{head}.{flipped}", context="c")

    def test_old_key_still_decrypts_after_rotation(self) -> None:
        old, new = key(), key()
        sealed = FieldCipher({"old": old}, active="old").encrypt("p", context="c")
        rotated = FieldCipher({"old": old, "new": new}, active="new")
        assert rotated.decrypt(sealed, context="c") == "p"
        assert rotated.encrypt("p", context="c").split(".")[1] == "new"

    def test_bad_keys_are_refused(self) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            FieldCipher({"a": b"short"}, active="a")
        with pytest.raises(ValueError, match="active key"):
            FieldCipher({"a": key()}, active="b")


class TestCipherFromSettings:
    def test_development_generates_a_private_key_file(self, tmp_path: Path) -> None:
        path = tmp_path / "k" / "data-key"
        first = cipher_from_settings(SecuritySettings(data_key_file=path), development=True)
        assert path.stat().st_mode & 0o777 == 0o600
        again = cipher_from_settings(SecuritySettings(data_key_file=path), development=True)
        assert again.decrypt(first.encrypt("x", context="c"), context="c") == "x"

    def test_production_requires_configured_keys(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="data_keys"):
            cipher_from_settings(SecuritySettings(data_key_file=tmp_path / "k"), development=False)
        configured = SecuritySettings(data_keys={"k1": base64.b64encode(key()).decode()})
        assert cipher_from_settings(configured, development=False)
