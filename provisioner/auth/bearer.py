"""Verify bearer JWTs from the organisation's identity provider against its JWKS.

The key set is cached and fetched again when a token names a `kid` we do not know (keys
rotate), but no more often than `jwks_refresh_seconds`, so a flood of tokens with random
kids cannot turn us into a load generator against the identity provider. Only asymmetric
algorithms from the allow-list are accepted; `alg: none` and HS256 never are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from provisioner.auth.errors import AuthenticationFailed
from provisioner.auth.principal import Principal, manager_from_claims
from provisioner.settings import AuthSettings


class JwksCache:
    """The identity provider's signing keys, by `kid`."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        if settings.jwks_url is None and settings.jwks_file is None:
            raise ValueError("auth.jwks_url or auth.jwks_file must be set")
        self._settings = settings
        self._client = client
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    def current(self, kid: str | None) -> PyJWK | None:
        """The key `key_for(kid)` would give now, without fetching (None if there is none)."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def key_for(self, kid: str | None) -> PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and self._may_refresh():
                self._keys = await self._load()
                self._fetched_at = self._clock()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid is None or kid not in self._keys:
            raise AuthenticationFailed(
                "the token is signed with a key the identity provider does not publish"
            )
        return self._keys[kid]

    def _may_refresh(self) -> bool:
        return (
            self._fetched_at is None
            or self._clock() - self._fetched_at >= self._settings.jwks_refresh_seconds
        )

    async def _load(self) -> dict[str, PyJWK]:
        document = await self._fetch()
        keys: dict[str, PyJWK] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK.from_dict(dict(entry))
            except jwt.PyJWTError:
                continue  # a key type we do not support cannot sign tokens we accept
            keys[str(entry.get("kid", ""))] = key
        return keys

    async def _fetch(self) -> dict[str, Any]:
        if self._settings.jwks_file is not None:
            try:
                text = await asyncio.to_thread(self._settings.jwks_file.read_text)
                loaded: dict[str, Any] = json.loads(text)
            except (OSError, ValueError):
                raise AuthenticationFailed("the identity provider's keys are unavailable") from None
            return loaded
        assert self._settings.jwks_url is not None  # noqa: S101 (checked in __init__)
        client = self._client or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        try:
            response = await client.get(self._settings.jwks_url)
            response.raise_for_status()
            fetched: dict[str, Any] = response.json()
            return fetched
        except (httpx.HTTPError, ValueError):
            raise AuthenticationFailed("the identity provider's keys are unavailable") from None
        finally:
            if self._client is None:
                await client.aclose()


@dataclass(frozen=True)
class _Verified:
    """A token that passed every check, until `good_until` (monotonic seconds)."""

    principal: Principal
    key: PyJWK
    kid: str | None
    good_until: float


class BearerVerifier:
    """Turns an `Authorization: Bearer` token into a `Principal`, or refuses it.

    Verified tokens are remembered (by SHA-256, never the token itself) until the earlier
    of their expiry and `_REMEMBER_SECONDS`: a calendar integration sends the same token
    with every call, and parsing plus an RSA check was about 0.5 ms of each request. A
    remembered token is refused again the moment its key is no longer published.
    """

    _REMEMBER_SECONDS = 60.0
    _REMEMBER_MAX = 4096

    def __init__(
        self,
        settings: AuthSettings,
        keys: JwksCache,
        *,
        roles: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._roles = roles or {}
        self._clock = clock
        self._wall_clock = wall_clock
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            if remembered.good_until > self._clock() and (
                self._keys.current(remembered.kid) is remembered.key
            ):
                return remembered.principal
            del self._verified[digest]
        principal, key, kid, expires_at = await self._verify(token)
        lifetime = min(self._REMEMBER_SECONDS, expires_at - self._wall_clock())
        if lifetime > 0:
            self._verified[digest] = _Verified(principal, key, kid, self._clock() + lifetime)
            if len(self._verified) > self._REMEMBER_MAX:
                self._verified.popitem(last=False)  # the oldest
        return principal

    async def _verify(self, token: str) -> tuple[Principal, PyJWK, str | None, float]:
        """Every check, from the token alone; returns what `verify` remembers."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed("the access token is not a JWT") from None
        if header.get("alg") not in self._settings.algorithms:
            raise AuthenticationFailed("the token's signing algorithm is not allowed")
        key = await self._keys.key_for(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(self._settings.algorithms),
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the access token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(
                f"the access token was refused: {type(exc).__name__}"
            ) from None
        if "nonce" in claims or str(header.get("typ", "")).lower() in ("id_token", "id+jwt"):
            # An id_token proves a sign-in to the web client; it is not an access token for
            # this API (it travels in logout URLs and browser history).
            raise AuthenticationFailed("an ID token is not an access token")
        kid = header.get("kid")
        # `exp` is required above; without leeway here, a remembered token never outlives it.
        return (
            self._principal(claims),
            key,
            kid if isinstance(kid, str) else None,
            float(claims["exp"]),
        )

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else list(claims.get("scp", []))
        client_id = claims.get("client_id")
        email = claims.get("email")
        if email is None and isinstance(client_id, str) and claims["sub"] == client_id:
            if len(INTEGRATION_PREFIX) + len(client_id) > SUBJECT_MAX:
                raise AuthenticationFailed("the token's client_id is too long")
            return integration_principal(client_id, scopes)
        if not isinstance(email, str) or "@" not in email:
            raise AuthenticationFailed("the token carries no email claim")
        oversized = oversized_claim(claims)
        if oversized is not None:
            raise AuthenticationFailed(f"the token's {oversized} claim is too long")
        return principal_from_claims(
            claims, groups_claim=self._settings.groups_claim, roles=self._roles, scopes=scopes
        )


# What the tables hold (`meetings.host_subject`, `audit_events.actor`: 255; e-mail
# addresses: 320; `meetings.host_name`: 200). A longer `sub` or `email` cannot be stored,
# so such a token is refused; a longer display name is shortened.
SUBJECT_MAX = 255
EMAIL_MAX = 320
NAME_MAX = 200
INTEGRATION_PREFIX = "client:"


def oversized_claim(claims: Mapping[str, Any]) -> str | None:
    """The first identity claim too long to store ("sub" or "email"), or None."""
    if len(str(claims.get("sub", ""))) > SUBJECT_MAX:
        return "sub"
    if len(str(claims.get("email", ""))) > EMAIL_MAX:
        return "email"
    return None


def integration_principal(client_id: str, scopes: Sequence[str]) -> Principal:
    """A client-credentials token: the integration itself, no person, no groups, no roles."""
    return Principal(
        subject=f"{INTEGRATION_PREFIX}{client_id}",
        email="",
        name=client_id,
        groups=(),
        scopes=frozenset(str(s) for s in scopes),
        client_id=client_id,
    )


def principal_from_claims(
    claims: Mapping[str, Any],
    *,
    groups_claim: str,
    roles: Mapping[str, Sequence[str]],
    scopes: Sequence[str],
) -> Principal:
    """A person, from an access token's or an id_token's claims (the same for both ways in).

    Roles come only from groups listed in the role mapping: no groups claim, no role.
    """
    email = str(claims.get("email", ""))
    groups = claims.get(groups_claim, [])
    if not isinstance(groups, list):
        groups = []
    group_names = tuple(str(group) for group in groups)
    return Principal(
        subject=str(claims["sub"]),
        email=email.lower(),
        name=str(claims.get("name") or email.split("@")[0])[:NAME_MAX],
        groups=group_names,
        scopes=frozenset(str(s) for s in scopes),
        roles=frozenset(role for group in group_names for role in roles.get(group, ())),
        email_verified=claims.get("email_verified") is not False,
        manager_email=manager_from_claims(claims),
    )
