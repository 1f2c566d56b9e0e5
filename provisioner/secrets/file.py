"""Secrets from files (`file:/run/secrets/zoom`, `file:/run/secrets/zoom.json#field`).

Kubernetes and systemd mount secrets as files and replace them in place when they rotate,
so the file is read again on every cache refresh rather than once at start-up.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable, pick_field


class FileSecretStore:
    """Reads a whole file (one trailing newline stripped) or one field of a JSON file."""

    name = "file"

    async def get(self, ref: SecretRef) -> str:
        return await asyncio.to_thread(self._read, ref)

    def _read(self, ref: SecretRef) -> str:
        path = Path(ref.path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretNotFound(f"{ref}: no such file") from None
        except UnicodeDecodeError:  # the codec's message would quote a byte of the secret
            raise SecretNotFound(f"{ref}: not UTF-8 text") from None
        except OSError as exc:
            raise SecretUnavailable(f"{ref}: cannot read ({exc.strerror})") from None
        if ref.field is None:
            return text.removesuffix("\n")
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretNotFound(f"{ref}: file is not JSON; drop the #field") from None
        return pick_field(data, ref, where="the file")

    async def aclose(self) -> None:
        return None
