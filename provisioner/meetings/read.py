"""Build the API's read models from rows (decrypting the host's join details when allowed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.crypto import FieldCipher
from provisioner.meetings.joins import open_join
from provisioner.meetings.models import Meeting
from provisioner.meetings.schemas import InviteeRead, JoinRead, MeetingRead


def meeting_read(
    meeting: Meeting,
    *,
    cipher: FieldCipher,
    include_host_join: bool,
    delivery_status: Mapping[str | None, str],
) -> dict[str, Any]:
    """The JSON body of `MeetingRead`; `include_host_join` only for the host themself."""
    host_join = None
    if include_host_join and meeting.host_join_secret is not None:
        join = open_join(cipher, meeting.host_join_secret, table="meetings", row_id=meeting.id)
        host_join = JoinRead(url=join.url, passcode=join.passcode)
    read = MeetingRead(
        id=meeting.id,
        topic=meeting.topic,
        provider=meeting.provider,
        state=meeting.state,
        start=meeting.starts_at,
        end=meeting.ends_at,
        timezone=meeting.timezone,
        settings=meeting.settings,
        enforced=list(meeting.enforced),
        not_enforced=list(meeting.not_enforced),
        invitees=[
            InviteeRead(
                email=i.email,
                name=i.name,
                channel=i.channel,
                personal_link=i.personal_link,
                delivery_status=delivery_status.get(i.id),
            )
            for i in meeting.current_invitees
        ],
        host_join=host_join,
        created_at=meeting.created_at,
    )
    return read.model_dump(mode="json")
