"""Jitsi Meet (self-hosted with Prosody token auth, or 8x8 JaaS) as a meeting provider."""

from provisioner.providers.jitsi.config import JitsiConfig
from provisioner.providers.jitsi.provider import JitsiProvider

__all__ = ["JitsiConfig", "JitsiProvider"]
