"""AWS Secrets Manager through `boto3` (`aws:<secret id>#<json field>`).

boto3 is synchronous, so each call runs in a worker thread. Credentials come from boto3's
usual chain (environment, shared config, instance or pod role); `endpoint_url` points the
client at a local endpoint (moto in tests, a VPC endpoint in production). Timeouts and
retries are explicit so a slow endpoint cannot hang start-up.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable, pick_field
from provisioner.settings import AwsSecretsSettings

_NOT_FOUND = {"ResourceNotFoundException", "DecryptionFailure"}


class AwsSecretStore:
    """Reads `SecretString` values; a `#field` picks one key of a JSON secret."""

    name = "aws"

    def __init__(self, settings: AwsSecretsSettings) -> None:
        self._settings = settings
        self._client: Any = boto3.client(
            "secretsmanager",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=botocore.config.Config(
                connect_timeout=settings.timeout_seconds,
                read_timeout=settings.timeout_seconds,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    @property
    def address(self) -> str:
        return self._settings.endpoint_url or f"secretsmanager.{self._settings.region}"

    async def get(self, ref: SecretRef) -> str:
        text = await asyncio.to_thread(self._read, ref)
        if ref.field is None:
            return text
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretNotFound(f"{ref}: the secret is not JSON; drop the #field") from None
        return pick_field(data, ref, where=f"secret {ref.path}")

    def _read(self, ref: SecretRef) -> str:
        try:
            response = self._client.get_secret_value(SecretId=ref.path)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                raise SecretNotFound(f"{ref}: {code} at {self.address}") from None
            raise SecretUnavailable(f"{ref}: {self.address} refused ({code})") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise SecretUnavailable(
                f"{ref}: AWS Secrets Manager at {self.address} is unreachable "
                f"({type(exc).__name__})"
            ) from None
        value = response.get("SecretString")
        if not isinstance(value, str):
            raise SecretNotFound(
                f"{ref}: the secret has no SecretString (binary secrets unsupported)"
            )
        return value

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)
