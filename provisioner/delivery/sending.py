"""One send through a channel, with its failures turned into values the worker records.

Never raises: a channel's own error comes back as that error, and an unexpected exception
(a bug) as a retriable one, so that no exception can lose a delivery between its claim and
its recorded outcome.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.delivery.alerts import AlertChannel, DeadLetterAlert
from provisioner.delivery.base import (
    Channel,
    ChannelError,
    ChannelRejected,
    ChannelRetriable,
    DeliveryContext,
    DeliveryReceipt,
)
from provisioner.delivery.chat_config import ChatUserNotFound
from provisioner.delivery.notices import NoticeChannel, PrivateNotice


async def send_alert(
    channels: Mapping[str, Channel], alert: DeadLetterAlert | PrivateNotice
) -> DeliveryReceipt | ChannelError:
    """Alerts and notices go by email only: they must reach a person, not a chat bot."""
    email = channels.get("email")
    try:
        if isinstance(alert, PrivateNotice):
            if not isinstance(email, NoticeChannel):
                return ChannelRejected("no email channel is configured to carry notices")
            return await email.send_notice(alert)
        if not isinstance(email, AlertChannel):
            return ChannelRejected("no email channel is configured to carry alerts")
        return await email.send_alert(alert)
    except ChannelError as exc:
        return exc
    except Exception as exc:  # an unexpected bug must not lose the alert
        return ChannelRetriable(f"unexpected {type(exc).__name__}")


async def send(
    channels: Mapping[str, Channel], channel_name: str, context: DeliveryContext
) -> tuple[DeliveryReceipt | None, ChannelError | None, bool]:
    """Send through the chosen channel; a chat user we cannot find gets email instead.

    Returns the receipt or the error, and whether the email fallback was used.
    """
    channel = channels.get(channel_name)
    try:
        if channel is None:
            raise ChannelRejected(f"no channel {channel_name!r} is configured")
        return await channel.send(context), None, False
    except ChatUserNotFound as exc:
        email = channels.get("email")
        if channel_name == "email" or email is None:
            return None, exc, False
        try:
            return await email.send(context), None, True
        except ChannelError as fallback_error:
            return None, fallback_error, True
        except Exception as bug:  # an unexpected bug must not lose the delivery
            return None, ChannelRetriable(f"unexpected {type(bug).__name__}"), True
    except ChannelError as exc:
        return None, exc, False
    except Exception as exc:  # an unexpected bug must not lose the delivery
        return None, ChannelRetriable(f"unexpected {type(exc).__name__}"), False
