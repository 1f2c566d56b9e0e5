"""Google Meet through Calendar events and the Meet REST API (domain-wide delegation)."""

from provisioner.providers.google_meet.config import GoogleMeetConfig
from provisioner.providers.google_meet.provider import GoogleMeetProvider

__all__ = ["GoogleMeetConfig", "GoogleMeetProvider"]
