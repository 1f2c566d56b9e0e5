"""Identity claims too long to store: a token whose `sub` or `email` would not fit the
tables is refused at the door (401), not a 500 at the first insert; a long display name
is shortened to what `meetings.host_name` holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.auth.bearer import (
    EMAIL_MAX,
    NAME_MAX,
    SUBJECT_MAX,
    BearerVerifier,
    JwksCache,
    oversized_claim,
)
from provisioner.auth.errors import AuthenticationFailed
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.settings import AuthSettings


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer(issuer="https://idp.test.invalid")


@pytest.fixture
def verifier(issuer: LocalIssuer, tmp_path: Path) -> BearerVerifier:
    settings = AuthSettings(issuer=issuer.issuer, jwks_file=issuer.write_jwks(tmp_path / "k"))
    return BearerVerifier(settings, JwksCache(settings))


class TestOversizedClaims:
    async def test_the_longest_storable_sub_and_email_are_accepted(
        self, issuer: LocalIssuer, verifier: BearerVerifier
    ) -> None:
        email = "a" * (EMAIL_MAX - len("@example.com")) + "@example.com"
        token = issuer.token(subject="s" * SUBJECT_MAX, email=email, name="Ana")
        principal = await verifier.verify(token)
        assert len(principal.subject) == SUBJECT_MAX and principal.email == email

    @pytest.mark.parametrize(
        ("subject", "email", "claim"),
        [
            ("s" * (SUBJECT_MAX + 1), "ana@example.com", "sub"),
            ("ana", "a" * EMAIL_MAX + "@example.com", "email"),
        ],
    )
    async def test_one_character_more_is_refused(
        self,
        issuer: LocalIssuer,
        verifier: BearerVerifier,
        subject: str,
        email: str,
        claim: str,
    ) -> None:
        token = issuer.token(subject=subject, email=email, name="Ana")
        with pytest.raises(AuthenticationFailed, match=f"token's {claim} claim is too long"):
            await verifier.verify(token)
        assert oversized_claim({"sub": subject, "email": email}) == claim

    async def test_an_integration_whose_subject_would_not_fit_is_refused(
        self, issuer: LocalIssuer, verifier: BearerVerifier
    ) -> None:
        token = issuer.client_token("c" * SUBJECT_MAX)  # stored as "client:<id>"
        with pytest.raises(AuthenticationFailed, match="client_id is too long"):
            await verifier.verify(token)

    async def test_a_long_display_name_is_shortened(
        self, issuer: LocalIssuer, verifier: BearerVerifier
    ) -> None:
        token = issuer.token(subject="ana", email="ana@example.com", name="N" * 1000)
        assert (await verifier.verify(token)).name == "N" * NAME_MAX
