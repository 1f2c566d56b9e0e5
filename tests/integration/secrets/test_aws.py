"""AwsSecretStore against moto's Secrets Manager in server mode on loopback."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from provisioner.secrets.aws import AwsSecretStore
from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable
from provisioner.secrets.cache import CachingSecretStore
from provisioner.settings import AwsSecretsSettings

REF = SecretRef.parse("aws:provisioner/zoom#client_secret")


def seed(endpoint: str, value: dict[str, str]) -> object:
    client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=endpoint)
    client.create_secret(Name="provisioner/zoom", SecretString=json.dumps(value))
    return client


class TestSecretsManager:
    async def test_reads_json_field_and_whole_string(
        self, moto_endpoint: tuple[str, object]
    ) -> None:
        endpoint, _ = moto_endpoint
        client = seed(endpoint, {"client_secret": "aws-client-secret-1"})
        client.create_secret(Name="plain", SecretString="plain-value-1")  # type: ignore[attr-defined]
        store = AwsSecretStore(AwsSecretsSettings(endpoint_url=endpoint))
        try:
            assert await store.get(REF) == "aws-client-secret-1"
            assert await store.get(SecretRef.parse("aws:plain")) == "plain-value-1"
            with pytest.raises(SecretNotFound):
                await store.get(SecretRef.parse("aws:provisioner/nothing#x"))
            with pytest.raises(SecretNotFound):
                await store.get(SecretRef.parse("aws:provisioner/zoom#nope"))
        finally:
            await store.aclose()

    async def test_rotation_is_picked_up_after_ttl(self, moto_endpoint: tuple[str, object]) -> None:
        endpoint, _ = moto_endpoint
        client = seed(endpoint, {"client_secret": "aws-before-rotation"})
        offset = [0.0]
        store = CachingSecretStore(
            {"aws": AwsSecretStore(AwsSecretsSettings(endpoint_url=endpoint))},
            ttl_seconds=30,
            max_stale_seconds=60,
            clock=lambda: time.monotonic() + offset[0],
        )
        try:
            assert await store.get(REF) == "aws-before-rotation"
            client.put_secret_value(  # type: ignore[attr-defined]
                SecretId="provisioner/zoom",
                SecretString=json.dumps({"client_secret": "aws-after-rotation"}),
            )
            assert await store.get(REF) == "aws-before-rotation"
            offset[0] = 31
            assert await store.refresh() == {REF}
            assert await store.get(REF) == "aws-after-rotation"
        finally:
            await store.aclose()

    async def test_unreachable_endpoint_is_unavailable(
        self, moto_endpoint: tuple[str, object]
    ) -> None:
        endpoint, server = moto_endpoint
        seed(endpoint, {"client_secret": "x" * 10})
        server.stop()  # type: ignore[attr-defined]
        store = AwsSecretStore(AwsSecretsSettings(endpoint_url=endpoint, timeout_seconds=1))
        with pytest.raises(SecretUnavailable, match="127.0.0.1"):
            await store.get(REF)
        await store.aclose()
