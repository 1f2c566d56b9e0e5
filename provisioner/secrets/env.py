"""Secrets from environment variables (`env:NAME`): the default, and the bootstrap for
the credentials another store needs (a Vault token, an AppRole secret id)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from provisioner.secrets.base import SecretNotFound, SecretRef, pick_field


class EnvSecretStore:
    """Reads `env:NAME` (optionally `env:NAME#field` for a JSON value)."""

    name = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # Read at call time from the live environment unless a mapping is given (tests).
        self._environ = environ

    async def get(self, ref: SecretRef) -> str:
        environ = self._environ if self._environ is not None else os.environ
        value = environ.get(ref.path)
        if value is None:
            raise SecretNotFound(f"{ref}: environment variable {ref.path} is not set")
        if ref.field is None:
            return value
        try:
            data = json.loads(value)
        except ValueError:
            raise SecretNotFound(f"{ref}: {ref.path} is not JSON; drop the #field") from None
        return pick_field(data, ref, where=f"environment variable {ref.path}")

    async def aclose(self) -> None:
        return None
