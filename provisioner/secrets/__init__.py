"""Secrets by reference: env, file, Vault/OpenBao and AWS Secrets Manager behind one store."""

from provisioner.secrets.base import (
    SecretError,
    SecretNotFound,
    SecretRef,
    SecretStore,
    SecretUnavailable,
    is_reference,
)
from provisioner.secrets.cache import CachingSecretStore, SecretsStatus

__all__ = [
    "CachingSecretStore",
    "SecretError",
    "SecretNotFound",
    "SecretRef",
    "SecretStore",
    "SecretUnavailable",
    "SecretsStatus",
    "is_reference",
]
