"""Zoom (Server-to-Server OAuth app) as a meeting provider."""

from provisioner.providers.zoom.config import ZoomConfig
from provisioner.providers.zoom.provider import ZoomProvider

__all__ = ["ZoomConfig", "ZoomProvider"]
