"""Microsoft Teams meetings through Microsoft Graph (client credentials, onlineMeetings)."""

from provisioner.providers.teams.config import TeamsConfig
from provisioner.providers.teams.provider import TeamsProvider

__all__ = ["TeamsConfig", "TeamsProvider"]
