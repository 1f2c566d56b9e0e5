"""The contract every delivery channel implements.

The worker loads a delivery row, decrypts that recipient's join details and hands the
channel a `DeliveryContext`; the channel renders its own message (email + .ics, chat DM)
and sends it to that one person. Channels know nothing of the database.

    ChannelError
    ├── ChannelRetriable(retry_after)   the server is down or said "try later" (4xx SMTP)
    └── ChannelRejected                 the message can never be sent as is (5xx SMTP)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

from provisioner.errors import ProvisionerError
from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import JoinDetails, Person


class Role(StrEnum):
    HOST = "host"
    INVITEE = "invitee"


class Method(StrEnum):
    """The iTIP method of the message (RFC 5546)."""

    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class HostAction:
    """One emergency link in the host's copy (`end`, `rotate`, `report`).

    `url` is secret like the join link: it is single-use and bound to the host, but it
    still must never reach a log, an invitee or an audit record.
    """

    action: str
    label: str
    hint: str
    url: str


@dataclass(frozen=True)
class DeliveryContext:
    """Everything a channel needs to tell one person about one meeting.

    `uid` is stable for the meeting's whole life and `sequence` grows with each update,
    so calendar clients replace the earlier invitation instead of adding a second one.
    `join` is secret; `personal` says the link identifies this recipient alone.
    `not_enforced` lists controls the provider could not enforce (shown to the host).
    `actions` are the host's emergency links; channels show them to the host only.
    `uninvited` marks a CANCEL that takes this one invitee off a meeting that goes on
    (RFC 5546 3.2.5), as opposed to one cancelling the whole meeting: it must say so,
    and its .ics must not carry STATUS:CANCELLED.
    """

    delivery_id: str
    meeting_id: str
    uid: str
    sequence: int
    method: Method
    topic: str
    start: datetime
    end: datetime
    timezone: str
    provider: str
    organizer: Person
    recipient: Person
    role: Role
    join: JoinDetails
    personal: bool
    settings: MeetingSettings
    not_enforced: frozenset[Control]
    # Host copies only: the one-click emergency links (empty for invitees, always).
    actions: tuple[HostAction, ...] = ()
    # CANCEL only: this invitee was taken off the meeting; everyone else still meets.
    uninvited: bool = False


@dataclass(frozen=True)
class DeliveryReceipt:
    """What the channel can tell us about a successful send (no message content)."""

    channel: str
    message_id: str


class ChannelError(ProvisionerError):
    code: ClassVar[str] = "delivery-failed"
    title: ClassVar[str] = "The message could not be delivered"


class ChannelRetriable(ChannelError):
    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ChannelRejected(ChannelError):
    code: ClassVar[str] = "delivery-rejected"


@runtime_checkable
class Channel(Protocol):
    """A private way to reach one person."""

    name: str

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        """Render and send one message to `context.recipient` alone.

        Returns:
            A receipt with the channel's message id.

        Raises:
            ChannelRetriable: try again later (connection refused, 4xx SMTP reply).
            ChannelRejected: permanent failure (recipient refused, 5xx SMTP reply).
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""
        ...
