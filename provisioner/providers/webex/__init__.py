"""Webex Meetings (service app or integration) as a meeting provider."""

from provisioner.providers.webex.config import WebexConfig
from provisioner.providers.webex.provider import WebexProvider

__all__ = ["WebexConfig", "WebexProvider"]
