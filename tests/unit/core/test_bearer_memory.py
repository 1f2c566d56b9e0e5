"""Verified bearer tokens are remembered briefly, and never past what made them valid.

A calendar integration sends one token with every call; verifying it each time was about
half a millisecond of every request. What must not change: an expired token is refused,
a token whose signing key the identity provider no longer publishes is refused, and one
token is never taken for another.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from jwt import PyJWK

from provisioner.auth.bearer import BearerVerifier, JwksCache
from provisioner.auth.errors import AuthenticationFailed
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.auth.principal import Principal
from provisioner.settings import AuthSettings


class Clock:
    """Monotonic and wall clocks moved together by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def issuer() -> LocalIssuer:
    return LocalIssuer(issuer="https://idp.test.invalid")


def verifier_for(issuer: LocalIssuer, jwks: Path, clock: Clock) -> tuple[BearerVerifier, list[str]]:
    """A verifier whose full checks are counted (`checked` grows by one per real check)."""
    settings = AuthSettings(
        issuer=issuer.issuer,
        jwks_file=issuer.write_jwks(jwks),
        leeway_seconds=0,
        jwks_refresh_seconds=10,
    )
    keys = JwksCache(settings, clock=clock.monotonic)
    verifier = BearerVerifier(settings, keys, clock=clock.monotonic, wall_clock=clock.wall)
    checked: list[str] = []
    full_check = verifier._verify

    async def counted(token: str) -> tuple[Principal, PyJWK, str | None, float]:
        checked.append(token)
        return await full_check(token)

    verifier._verify = counted  # type: ignore[method-assign]
    return verifier, checked


async def test_the_same_token_is_checked_once(issuer: LocalIssuer, tmp_path: Path) -> None:
    clock = Clock()
    verifier, checked = verifier_for(issuer, tmp_path / "jwks.json", clock)
    token = issuer.token(subject="u1", email="ana@example.com", name="Ana")

    first = await verifier.verify(token)
    second = await verifier.verify(token)

    assert first == second
    assert first.subject == "u1"
    assert len(checked) == 1
    assert all(isinstance(digest, bytes) for digest in verifier._verified)  # not the token


async def test_another_token_is_never_taken_for_a_remembered_one(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    clock = Clock()
    verifier, _ = verifier_for(issuer, tmp_path / "jwks.json", clock)
    ana = issuer.token(subject="u1", email="ana@example.com", name="Ana")
    ben = issuer.token(subject="u2", email="ben@example.com", name="Ben")

    assert (await verifier.verify(ana)).subject == "u1"
    assert (await verifier.verify(ben)).subject == "u2"
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(ana[:-4] + "AAAA")  # same claims, forged signature


async def test_a_remembered_token_is_refused_once_it_expires(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    # Real clocks here: PyJWT checks `exp` against the time itself.
    verifier, checked = verifier_for(issuer, tmp_path / "jwks.json", Clock())
    token = issuer.token(subject="u1", email="ana@example.com", name="Ana", lifetime_seconds=2)
    await verifier.verify(token)

    await asyncio.sleep(2.1)  # past `exp`, though well within the memory's own 60 s
    with pytest.raises(AuthenticationFailed, match="expired"):
        await verifier.verify(token)
    assert len(checked) == 2


async def test_memory_lapses_and_the_token_is_checked_again(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    clock = Clock()
    verifier, checked = verifier_for(issuer, tmp_path / "jwks.json", clock)
    token = issuer.token(subject="u1", email="ana@example.com", name="Ana")
    await verifier.verify(token)

    clock.offset = BearerVerifier._REMEMBER_SECONDS + 1
    assert (await verifier.verify(token)).subject == "u1"
    assert len(checked) == 2


async def test_a_token_signed_by_a_withdrawn_key_is_refused(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    clock = Clock()
    jwks = tmp_path / "jwks.json"
    verifier, _ = verifier_for(issuer, jwks, clock)
    token = issuer.token(subject="u1", email="ana@example.com", name="Ana")
    await verifier.verify(token)

    # The identity provider rotates: only the new key is published, and a token signed
    # with it makes us fetch the key set again (after the refresh interval), well within
    # the time the old token is remembered.
    successor = LocalIssuer(issuer=issuer.issuer)
    successor.write_jwks(jwks)
    clock.offset = 11
    fresh = successor.token(subject="u2", email="ben@example.com", name="Ben")
    assert (await verifier.verify(fresh)).subject == "u2"

    with pytest.raises(AuthenticationFailed, match="does not publish"):
        await verifier.verify(token)
