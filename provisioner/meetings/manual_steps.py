"""What a host can do in the meeting window where the provider's API cannot do it.

"Not supported" alone leaves an intruder in the call; every refusal of an in-meeting
control says where the button is instead. Kept apart so the lifecycle (end) and the
controls (expel, lock) give the same kind of answer.
"""

from __future__ import annotations

from provisioner.providers.base import Feature, MeetingProvider
from provisioner.providers.errors import ProviderUnsupported

# What the host can do by hand where the provider's API cannot do it for them.
EXPEL_BY_HAND: dict[str, str] = {
    "zoom": "in the Zoom meeting window open Participants, point at the person and choose "
    "More > Remove",
    "teams": "in the Teams meeting window open People, choose the person's ... menu and "
    "Remove from meeting",
    "google_meet": "in the Meet window open People, choose the person and Remove from the call",
    "webex": "in the Webex meeting window open Participants, right-click the person and "
    "choose Expel",
    "jitsi": "in the Jitsi meeting window open the participants pane, choose the person's "
    "menu and Kick out",
}
LOCK_BY_HAND: dict[str, str] = {
    "zoom": "in the Zoom meeting window choose Security > Lock Meeting",
    "teams": "in the Teams meeting window open People, choose ... and Lock the meeting",
    "google_meet": "in the Meet window open Host controls and turn Quick access off "
    "(everyone else must then ask to join)",
    "webex": "in the Webex meeting window open Participants and choose Lock meeting",
    "jitsi": "in the Jitsi meeting window open Security options and turn the lobby on",
}


END_BY_HAND: dict[str, str] = {
    "zoom": "in the Zoom meeting window choose End > End Meeting for All",
    "teams": "in the Teams meeting window open the Leave menu and choose End meeting",
    "google_meet": "in the Meet window choose Leave call > End the call for everyone",
    "webex": "in the Webex meeting window choose End meeting for all",
    "jitsi": "in the Jitsi meeting window, as the moderator, open the hang-up menu and "
    "choose End meeting for all",
}


def unsupported(provider: MeetingProvider, feature: Feature) -> ProviderUnsupported:
    """A plain refusal that tells the host what to do instead."""
    if feature is Feature.EXPEL:
        what, hint = "remove a participant", EXPEL_BY_HAND.get(provider.name)
    elif feature is Feature.LOCK:
        what, hint = "lock a meeting", LOCK_BY_HAND.get(provider.name)
    elif feature is Feature.END_FOR_ALL:
        what, hint = "end a meeting for everyone", END_BY_HAND.get(provider.name)
    else:
        what, hint = str(feature).replace("_", " "), None
    detail = f"{provider.name} has no API to {what}"
    detail += f": {hint}" if hint else ": do it in the meeting window as the host"
    return ProviderUnsupported(detail, provider=provider.name, feature=feature)
