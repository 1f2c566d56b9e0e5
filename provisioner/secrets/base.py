"""What a secret store is, how settings name a secret, and how a lookup fails.

Settings never hold a secret's value in production, only a reference to it:

    env:ZOOM_SECRET                         an environment variable
    file:/run/secrets/zoom                  a whole file (trailing newline stripped)
    file:/run/secrets/zoom.json#client_secret   one field of a JSON file
    vault:kv/provisioner#zoom_client_secret  KV v2: mount `kv`, path `provisioner`, field
    aws:provisioner/zoom#client_secret       Secrets Manager secret id, JSON field (optional)

Errors:

    SecretError
    ├── SecretUnavailable   the store cannot be reached or refused us (retry, serve cached)
    └── SecretNotFound      the store answered: no such secret or field (a config mistake)

Every message names the reference and the store's address, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Scheme = Literal["env", "file", "vault", "aws"]
SCHEMES: tuple[Scheme, ...] = ("env", "file", "vault", "aws")


class SecretError(Exception):
    """A secret could not be read; the message names the reference, never a value."""


class SecretUnavailable(SecretError):
    """The store is unreachable or refused us: retrying later may work."""


class SecretNotFound(SecretError):
    """The store answered and has no such secret (or no such field in it)."""


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference: `scheme:path#field` (field optional)."""

    scheme: Scheme
    path: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}" + (f"#{self.field}" if self.field else "")

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """Parse `scheme:path#field`.

        Raises:
            ValueError: unknown scheme, empty path or empty field.
        """
        scheme, sep, rest = text.partition(":")
        if not sep or scheme not in SCHEMES:
            raise ValueError(
                f"not a secret reference (expected one of {', '.join(s + ':' for s in SCHEMES)})"
            )
        path, hash_sep, field = rest.partition("#")
        if not path or (hash_sep and not field):
            raise ValueError(f"secret reference {scheme}:... needs a path (and a field after #)")
        if scheme == "vault" and "/" not in path.strip("/"):
            raise ValueError("vault references are vault:<mount>/<path>#<field>")
        if scheme == "vault" and not field:
            raise ValueError("vault references need a #field (KV v2 stores a map)")
        return cls(scheme=scheme, path=path, field=field or None)


def is_reference(value: object) -> bool:
    """True when `value` is a string that names a secret instead of holding one."""
    return isinstance(value, str) and value.startswith(tuple(f"{s}:" for s in SCHEMES))


@runtime_checkable
class SecretStore(Protocol):
    """Reads secret values by reference. Implementations never log a value."""

    name: str

    async def get(self, ref: SecretRef) -> str:
        """Return the current value of `ref`.

        Raises:
            SecretUnavailable: the store cannot be reached, timed out or refused us.
            SecretNotFound: the store has no such secret or field.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and stop background work."""
        ...


def pick_field(data: object, ref: SecretRef, *, where: str) -> str:
    """Take `ref.field` from a decoded JSON object (or the whole value without a field)."""
    if ref.field is None:
        if isinstance(data, str):
            return data
        raise SecretNotFound(f"{ref}: {where} holds a structured value; name a #field")
    if not isinstance(data, dict) or ref.field not in data:
        raise SecretNotFound(f"{ref}: {where} has no field {ref.field!r}")
    value = data[ref.field]
    if not isinstance(value, str):
        raise SecretNotFound(f"{ref}: field {ref.field!r} is not a string")
    return value
