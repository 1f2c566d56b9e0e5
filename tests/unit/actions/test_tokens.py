"""Action link tokens: who can mint them, what breaks them, and how long links live."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta

from provisioner.actions.service import link_expiry
from provisioner.actions.tokens import ActionLinkSigner
from provisioner.crypto import FieldCipher
from provisioner.redaction import REDACTED, scrub_text
from provisioner.settings import ActionsSettings


def cipher(**keys: bytes) -> FieldCipher:
    return FieldCipher(keys, active=sorted(keys)[-1])


class TestSigner:
    def test_round_trip(self) -> None:
        signer = ActionLinkSigner.from_cipher(cipher(k1=os.urandom(32)))
        link_id = str(uuid.uuid4())
        token = signer.token(link_id)
        assert token.startswith("pal.")
        assert signer.link_id(token) == link_id

    def test_tampered_or_malformed_tokens_name_no_link(self) -> None:
        signer = ActionLinkSigner.from_cipher(cipher(k1=os.urandom(32)))
        token = signer.token(str(uuid.uuid4()))
        other_id = uuid.uuid4().hex
        mac = token.rsplit(".", 1)[1]
        flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
        for bad in (
            f"pal.{other_id}.{mac}",  # another row's id under this MAC
            token.rsplit(".", 1)[0] + "." + flipped,
            token + "x",
            "pal..",
            "",
        ):
            assert signer.link_id(bad) is None

    def test_another_installation_cannot_mint(self) -> None:
        ours = ActionLinkSigner.from_cipher(cipher(k1=os.urandom(32)))
        theirs = ActionLinkSigner.from_cipher(cipher(k1=os.urandom(32)))
        assert ours.link_id(theirs.token(str(uuid.uuid4()))) is None

    def test_links_survive_a_data_key_rotation(self) -> None:
        old_key, new_key = os.urandom(32), os.urandom(32)
        before = ActionLinkSigner.from_cipher(FieldCipher({"a": old_key}, active="a"))
        after = ActionLinkSigner.from_cipher(FieldCipher({"a": old_key, "b": new_key}, active="b"))
        link_id = str(uuid.uuid4())
        assert after.link_id(before.token(link_id)) == link_id
        assert after.token(link_id) != before.token(link_id)

    def test_mac_key_is_not_the_data_key(self) -> None:
        key = os.urandom(32)
        (derived,) = FieldCipher({"k": key}, active="k").derive_keys("provisioner action link v1")
        assert derived != key and len(derived) == 32

    def test_the_redactor_scrubs_a_token_from_any_log_text(self) -> None:
        signer = ActionLinkSigner.from_cipher(cipher(k1=os.urandom(32)))
        token = signer.token(str(uuid.uuid4()))
        line = f'GET /actions/{token} HTTP/1.1" 303'
        scrubbed = scrub_text(line)
        assert token not in scrubbed and REDACTED in scrubbed
        assert base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "=").hex() not in scrubbed


class TestExpiry:
    NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def test_valid_until_shortly_after_the_meeting_ends(self) -> None:
        ends = self.NOW + timedelta(days=2)
        settings = ActionsSettings(margin_minutes=90)
        assert link_expiry(ends, now=self.NOW, settings=settings) == ends + timedelta(minutes=90)

    def test_bounded_for_a_meeting_far_ahead(self) -> None:
        ends = self.NOW + timedelta(days=400)
        settings = ActionsSettings(max_lifetime_days=30)
        assert link_expiry(ends, now=self.NOW, settings=settings) == self.NOW + timedelta(days=30)
