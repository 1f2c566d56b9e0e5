"""Keys, room names and join tokens for Jitsi token authentication.

Everything here is pure computation: Jitsi keeps no meeting state we could call an API for,
so a "meeting" is a room name plus one signed token per person.

Room names are `HMAC-SHA256(room key, idempotency key, meeting id)` cut to 160 bits and
written in lower-case base32. That makes a retry of one logical create (same idempotency
key, same meeting id) land in the same room -- the nearest Jitsi has to "never create a
second meeting" -- while nobody without the signing key can predict or enumerate rooms.
The room key is derived from the signing key with a fixed label, so the room-name MAC can
never be confused with a token signature made with the same HS256 secret. Rotating the
signing key therefore changes the room a retry would get; rotate between meetings, not
during a create.

Tokens follow the claims Prosody's `token_verification` and 8x8 JaaS check (`iss`, `aud`,
`sub`, `room`, `nbf`, `exp`) and carry the person in `context.user`. Tokens, and therefore
join URLs, are bearer secrets: nothing in this module logs them or puts them in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from provisioner.providers.base import Person
from provisioner.providers.jitsi.config import JitsiConfig

ROOM_NAME_BYTES = 20  # 160 bits; the design asks for at least 128
JAAS_FEATURES = ("livestreaming", "outbound-call", "recording", "transcription")

_ROOM_KEY_LABEL = b"provisioner/jitsi/room-name/v1"
# Values under which some Jitsi plugin grants elevated rights (Prosody token_affiliation,
# token_moderation, JaaS). An invitee's token must carry none of them.
_ELEVATED_AFFILIATIONS = frozenset({"owner", "moderator", "teacher"})

SigningKey: TypeAlias = bytes | RSAPrivateKey
VerificationKey: TypeAlias = bytes | RSAPublicKey


@dataclass(frozen=True)
class JitsiKeys:
    """The loaded key material; `repr` leaves every secret out."""

    algorithm: str
    key_id: str | None
    signing_key: SigningKey = field(repr=False)
    verification_key: VerificationKey = field(repr=False)
    room_key: bytes = field(repr=False)


@dataclass(frozen=True)
class TokenWindow:
    """When a token may be used, as the integer epoch seconds JWT claims carry."""

    issued_at: int
    not_before: int
    expires_at: int


def load_keys(config: JitsiConfig) -> JitsiKeys:
    """Load and check the signing key once, at start-up.

    Raises:
        ValueError: the key cannot be loaded (see `JitsiConfig.load_private_key`); the
            config validator has normally caught this already, unless the file changed.
    """
    if config.algorithm == "HS256":
        if config.app_secret is None:  # the config validator guarantees this
            raise ValueError("algorithm HS256 needs app_secret")
        secret = config.app_secret.get_secret_value().encode()
        return JitsiKeys(
            algorithm="HS256",
            key_id=config.key_id,
            signing_key=secret,
            verification_key=secret,
            room_key=_derive_room_key(secret),
        )
    private_key = config.load_private_key()
    material = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return JitsiKeys(
        algorithm="RS256",
        key_id=config.key_id,
        signing_key=private_key,
        verification_key=private_key.public_key(),
        room_key=_derive_room_key(material),
    )


def _derive_room_key(material: bytes) -> bytes:
    return hmac.new(material, _ROOM_KEY_LABEL, hashlib.sha256).digest()


def _frame(value: str) -> bytes:
    """Length-prefix a field so ("ab", "c") and ("a", "bc") give different MACs."""
    data = value.encode()
    return len(data).to_bytes(8, "big") + data


def room_name(keys: JitsiKeys, *, prefix: str, idempotency_key: str, meeting_id: str) -> str:
    """The room for one logical create: deterministic for retries, unguessable otherwise."""
    mac = hmac.new(
        keys.room_key, _frame(idempotency_key) + _frame(meeting_id), hashlib.sha256
    ).digest()[:ROOM_NAME_BYTES]
    # 20 bytes is a multiple of 5, so base32 needs no padding; Jitsi lower-cases rooms.
    return prefix + base64.b32encode(mac).decode("ascii").lower()


def user_id(email: str) -> str:
    """A stable id for one person across meetings that is not their address in clear.

    Only a pseudonym: anyone who guesses the address can recompute it.
    """
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def build_claims(
    config: JitsiConfig,
    *,
    room: str,
    person: Person,
    moderator: bool,
    window: TokenWindow,
) -> dict[str, Any]:
    """The claims for one person's token in `config.profile`'s dialect."""
    user: dict[str, Any] = {
        "id": user_id(person.email),
        "name": person.name,
        "email": person.email.strip().lower(),
    }
    context: dict[str, Any] = {"user": user}
    if config.profile == "jaas":
        # JaaS reads string booleans, and refuses features to anyone but a moderator.
        flag = "true" if moderator else "false"
        user["moderator"] = flag
        context["features"] = {feature: flag for feature in JAAS_FEATURES}
    else:
        # Prosody plugins differ: token_affiliation reads `affiliation`, others read
        # `moderator`. Set both so the host is owner whichever one the server runs.
        user["moderator"] = moderator
        user["affiliation"] = "owner" if moderator else "member"
    return {
        "iss": config.token_issuer,
        "aud": config.audience,
        "sub": config.token_subject,
        "room": room,
        "iat": window.issued_at,
        "nbf": window.not_before,
        "exp": window.expires_at,
        "context": context,
    }


def mint(keys: JitsiKeys, claims: dict[str, Any]) -> str:
    """Sign `claims`; the result is a secret."""
    headers = {"kid": keys.key_id} if keys.key_id else None
    return jwt.encode(claims, keys.signing_key, algorithm=keys.algorithm, headers=headers)


def decode(config: JitsiConfig, keys: JitsiKeys, token: str) -> dict[str, Any]:
    """Check a token's signature, algorithm, `kid`, `iss`, `aud` and `sub`; return its claims.

    `nbf`, `exp` and `iat` are required but not compared with the current time: the caller
    checks them against the meeting's schedule, which is stricter and does not depend on
    when verification runs.

    Raises:
        jwt.InvalidTokenError: the token is not one this configuration would accept.
    """
    header = jwt.get_unverified_header(token)
    if header.get("kid") != keys.key_id:
        raise jwt.InvalidTokenError("unexpected kid")
    return jwt.decode(
        token,
        keys.verification_key,
        algorithms=[keys.algorithm],
        audience=config.audience,
        issuer=config.token_issuer,
        subject=config.token_subject,
        options={
            "require": ["iss", "aud", "sub", "room", "iat", "nbf", "exp"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        },
    )


def _truthy(value: object) -> bool:
    """Anything a lenient plugin might read as "yes" (JaaS uses strings)."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "no"}
    return bool(value)


def grants_moderator(claims: dict[str, Any]) -> bool:
    """Whether any claim some Jitsi deployment reads as moderator rights is set."""
    if _truthy(claims.get("moderator")):  # top-level, read by token_moderation
        return True
    context = claims.get("context")
    if not isinstance(context, dict):
        return False
    user = context.get("user")
    if isinstance(user, dict):
        if _truthy(user.get("moderator")):
            return True
        if str(user.get("affiliation", "")).lower() in _ELEVATED_AFFILIATIONS:
            return True
    features = context.get("features")
    if isinstance(features, dict):
        return any(_truthy(value) for value in features.values())
    return False
