"""Fixtures for the secret-store tests (servers live in `servers.py`)."""

from tests.integration.secrets.servers import bao, moto_endpoint

__all__ = ["bao", "moto_endpoint"]
