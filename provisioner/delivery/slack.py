"""The Slack channel: one direct message, from the app's bot, to one person.

    users.lookupByEmail  email -> user id       (scope users:read.email)
    conversations.open   that one user -> DM id  (scope im:write)
    chat.postMessage     into that DM            (scope chat:write)

Direct messages only, whatever happens: there is no setting naming a channel, and the
conversation `conversations.open` hands back is checked to be an IM (`is_im` true, id
starting with "D") before anything is posted. Anything else is refused, so a join link
cannot land in a channel, public or private, or in a group DM.

Slack answers most failures with HTTP 200 and `{"ok": false, "error": "<code>"}`; those
codes and the HTTP failures become the channel errors the worker understands:

    users_not_found                   ChatUserNotFound (the worker falls back to email)
    ratelimited, HTTP 429             ChannelRetriable(retry_after from Retry-After)
    invalid_auth, not_authed, ...     ChannelRetriable ("misconfigured": fixing the token
                                      or scopes fixes it, so nothing is dead-lettered)
    5xx, timeouts, connect errors     ChannelRetriable
    anything else                     ChannelRejected

The worker owns retries (backoff, dead letter), so each HTTP call is tried once here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jinja2
import structlog

from provisioner.briefing.content import load_briefing
from provisioner.delivery.base import (
    ChannelError,
    ChannelRejected,
    ChannelRetriable,
    DeliveryContext,
    DeliveryReceipt,
    Method,
    Role,
)
from provisioner.delivery.chat_config import ChatUserNotFound, SlackConfig
from provisioner.delivery.ics import PERSONAL_NOTICE, PUBLIC_NOTICE
from provisioner.delivery.render import (
    default_template_dir,
    describe_enforced,
    describe_not_enforced,
    format_meeting_time,
    make_template_environment,
    provider_label,
    single_line,
)
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRetriable,
)
from provisioner.providers.http import (
    Circuit,
    ProviderHttp,
    RetryPolicy,
    parse_retry_after,
)

log = structlog.get_logger(__name__)

CHANNEL_NAME = "slack"
NOT_A_DIRECT_MESSAGE = "refused: not a direct message"

_JSON = {"Content-Type": "application/json; charset=utf-8"}
# Slack user ids: U... (workspace) or W... (Enterprise Grid). A comma would turn
# conversations.open into a group DM, so anything else is refused before the call.
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_IM_ID = re.compile(r"^D[A-Z0-9]{2,}$")
_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
_SECTION_LIMIT = 3000  # Slack's limit for a section block's text
_TOPIC_LIMIT = 200

_USER_NOT_FOUND = frozenset({"users_not_found", "user_not_found"})
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
# The token or the app's scopes are wrong: an operator can fix that, so keep retrying.
_MISCONFIGURED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
    }
)
_SLACK_DOWN = frozenset({"fatal_error", "internal_error", "request_timeout", "service_unavailable"})


@dataclass(frozen=True)
class SlackMessage:
    """What goes into chat.postMessage besides the channel.

    `text` is the notification and fallback text: it names the meeting but carries
    neither the link nor the passcode, because notification previews show it on lock
    screens and in email digests. The link and passcode are only in `blocks`.
    """

    text: str
    blocks: list[dict[str, Any]]


def escape_mrkdwn(text: str) -> str:
    """`text` safe to show in Slack mrkdwn.

    Slack's rule is to escape exactly `&`, `<` and `>`: with those escaped, user input
    cannot form a mention (`<!channel>`, `<@U…>`) or a link with a misleading label.
    Line breaks are flattened too (single_line), so a topic cannot fake extra lines.
    """
    return single_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_url(url: str) -> str:
    """The join URL ready for `<url|label>`.

    Only http(s) links are accepted (a `javascript:` link from a broken provider would
    otherwise be clickable). `&` is escaped as Slack asks; `|`, `<`, `>` and spaces are
    percent-encoded because they would end the URL part of the link early.

    Raises:
        ChannelRejected: the link is not an http(s) URL.
    """
    if urlsplit(url).scheme not in {"https", "http"}:
        raise ChannelRejected("the join link is not an http(s) URL")
    return (
        url.replace("&", "&amp;")
        .replace("|", "%7C")
        .replace("<", "%3C")
        .replace(">", "%3E")
        .replace(" ", "%20")
    )


def _short(text: str) -> str:
    flat = single_line(text)
    return flat if len(flat) <= _TOPIC_LIMIT else flat[: _TOPIC_LIMIT - 1] + "…"


def message_values(context: DeliveryContext) -> dict[str, object]:
    """What the mrkdwn templates see, every value already escaped for Slack.

    Escaping here rather than in the template means a template cannot forget to.
    Invitees get no security summary: telling every recipient which controls are off
    tells whoever they forward it to as well.
    """
    is_host = context.role is Role.HOST
    provider = escape_mrkdwn(provider_label(context.provider))
    try:
        when = format_meeting_time(context.start, context.timezone, end=context.end)
    except ValueError:
        raise ChannelRejected(
            f"delivery {context.delivery_id}: the meeting's time zone is unknown"
        ) from None
    values: dict[str, object] = {
        "is_host": is_host,
        # A CANCEL taking only this invitee off: the meeting itself goes on.
        "uninvited": context.uninvited,
        "topic": escape_mrkdwn(_short(context.topic)),
        "when": escape_mrkdwn(when),
        "provider": provider,
        "organizer": escape_mrkdwn(context.organizer.name or context.organizer.email),
        "recipient": escape_mrkdwn(context.recipient.name or context.recipient.email),
        "personal": context.personal,
        "personal_notice": escape_mrkdwn(PERSONAL_NOTICE),
        "public_notice": escape_mrkdwn(PUBLIC_NOTICE),
        "enforced": (
            [
                escape_mrkdwn(line)
                for line in describe_enforced(context.settings, context.not_enforced)
            ]
            if is_host
            else []
        ),
        "not_enforced": (
            [
                (escape_mrkdwn(control), escape_mrkdwn(advice))
                for control, advice in describe_not_enforced(context.not_enforced)
            ]
            if is_host
            else []
        ),
    }
    if context.method is Method.REQUEST:
        values["join_url"] = mrkdwn_url(context.join.url)
        values["passcode"] = escape_mrkdwn(context.join.passcode or "")
    return values


def briefing_values(context: DeliveryContext, templates: jinja2.Environment) -> dict[str, object]:
    """The host's security card and emergency links, escaped for Slack; empty for invitees
    (a forwarded invitee copy must carry neither)."""
    if context.role is not Role.HOST or context.method is not Method.REQUEST:
        return {"briefing_steps": [], "briefing_tip": "", "actions": []}
    briefing = load_briefing(templates, context.provider)
    return {
        "briefing_steps": [
            (escape_mrkdwn(step.task), escape_mrkdwn(step.how)) for step in briefing.steps
        ],
        "briefing_tip": escape_mrkdwn(briefing.tip),
        "actions": [
            (escape_mrkdwn(action.label), mrkdwn_url(action.url), escape_mrkdwn(action.hint))
            for action in context.actions
        ],
    }


def fallback_text(context: DeliveryContext) -> str:
    """The notification line: what and from whom, never the link or passcode."""
    topic = escape_mrkdwn(_short(context.topic))
    if context.uninvited:
        return f"Invitation withdrawn: {topic}"
    if context.method is Method.CANCEL:
        return f"Cancelled: {topic}"
    if context.role is Role.HOST:
        return f"Your meeting: {topic}"
    return f"Invitation: {topic}"


def render_slack_message(context: DeliveryContext, templates: jinja2.Environment) -> SlackMessage:
    """The message for `context.recipient`: `chat/invitation.md.j2` or, for a
    cancellation, `chat/cancellation.md.j2` (which has no link), split into section
    blocks at lines holding only `---`.

    Raises:
        ChannelRejected: the join link is not http(s) or the time zone is unknown.
    """
    kind = "invitation" if context.method is Method.REQUEST else "cancellation"
    values = message_values(context) | briefing_values(context, templates)
    text = templates.get_template(f"chat/{kind}.md.j2").render(values)
    blocks: list[dict[str, Any]] = []
    for chunk in _sections(text):
        if blocks:
            blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    return SlackMessage(text=fallback_text(context), blocks=blocks)


def _sections(text: str) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == "---":
            chunks.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    chunks.append("\n".join(current).strip())
    # A section over Slack's limit would make the whole post fail; the topic is capped,
    # so only a very long security summary could get here.
    return [chunk[:_SECTION_LIMIT] for chunk in chunks if chunk]


class SlackChannel:
    """Sends each delivery as a direct message from the app's bot to its one recipient."""

    name = CHANNEL_NAME

    def __init__(
        self,
        config: SlackConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        templates: jinja2.Environment | None = None,
        circuit: Circuit | None = None,
    ) -> None:
        """Build the channel; nothing connects until the first send.

        Args:
            config: the validated `[channels.slack]` settings.
            transport: where HTTP requests go (tests: Prism or an `httpx.MockTransport`).
            templates: the environment holding `chat/*`; by default the project's
                `templates/` folder.
            circuit: the circuit breaker; by default 5 failures open it for 30 s.
        """
        self._templates = (
            templates
            if templates is not None
            else make_template_environment(default_template_dir())
        )
        self._http = ProviderHttp(
            CHANNEL_NAME,
            base_url=config.api_base,
            transport=transport,
            timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
            retry=RetryPolicy(max_attempts=1),  # the worker retries, with backoff
            circuit=circuit,
            headers={"Authorization": f"Bearer {config.bot_token.get_secret_value()}"},
        )

    @classmethod
    def from_settings(cls, config: SlackConfig) -> SlackChannel:
        """The channel as the app builds it (the entry-point constructor)."""
        return cls(config)

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        """Look the recipient up by email, open the DM, check it is one, post.

        Returns:
            A receipt whose message id is `<DM id>:<message ts>`.

        Raises:
            ChatUserNotFound: no Slack user has the recipient's email address.
            ChannelRetriable: rate limited, Slack down, or the token/scopes are wrong.
            ChannelRejected: the conversation is not a direct message, or Slack refused
                the message.
        """
        # Render first: a message that cannot be built should fail before any call.
        message = render_slack_message(context, self._templates)
        user_id = await self._lookup_user(context)
        dm_id = await self._open_direct_message(context, user_id)
        body = await self._call(
            "chat.postMessage",
            context,
            json={
                "channel": dm_id,
                "text": message.text,
                "blocks": message.blocks,
                # Unfurling would make Slack's servers fetch the join link (and its
                # token), and could use up a one-time link before the person clicks it.
                "unfurl_links": False,
                "unfurl_media": False,
            },
        )
        ts = body.get("ts")
        if not isinstance(ts, str) or not ts:
            raise ChannelRetriable(f"delivery {context.delivery_id}: Slack sent no message ts")
        log.info("delivery.chat_sent", channel=CHANNEL_NAME, delivery_id=context.delivery_id)
        return DeliveryReceipt(channel=CHANNEL_NAME, message_id=f"{dm_id}:{ts}")

    async def _lookup_user(self, context: DeliveryContext) -> str:
        body = await self._call(
            "users.lookupByEmail", context, params={"email": context.recipient.email}
        )
        user = body.get("user")
        if not isinstance(user, Mapping) or user.get("deleted") is True:
            raise ChatUserNotFound(
                f"delivery {context.delivery_id}: no active Slack user has that address"
            )
        user_id = user.get("id")
        if not isinstance(user_id, str) or not _USER_ID.match(user_id):
            raise ChannelRejected(f"delivery {context.delivery_id}: Slack sent no usable user id")
        return user_id

    async def _open_direct_message(self, context: DeliveryContext, user_id: str) -> str:
        body = await self._call(
            "conversations.open",
            context,
            # One user: a 1:1 DM. return_im asks for the full IM object, whose is_im
            # flag is what proves the conversation is private.
            json={"users": user_id, "return_im": True},
        )
        return require_direct_message(body.get("channel"), delivery_id=context.delivery_id)

    async def _call(
        self,
        method: str,
        context: DeliveryContext,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any]:
        """One Web API call; returns the body of an `ok: true` answer."""
        try:
            if json is not None:
                response = await self._http.request(
                    "POST", f"/{method}", json=dict(json), headers=_JSON, expect=(200,)
                )
            else:
                response = await self._http.request(
                    "GET", f"/{method}", params=params, expect=(200,)
                )
        except ProviderError as exc:
            raise channel_error(exc, delivery_id=context.delivery_id, method=method) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise ChannelRetriable(
                f"delivery {context.delivery_id}: Slack {method} answered without JSON"
            )
        if body.get("ok") is True:
            return body
        raise slack_error(
            body.get("error"),
            delivery_id=context.delivery_id,
            method=method,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def require_direct_message(channel: object, *, delivery_id: str) -> str:
    """The DM id from conversations.open's `channel`, if it is a direct message.

    Both signs are required: `is_im` true and an id starting with "D" (channels start
    with C, private channels and group DMs with G). Slack sends `is_im` because we ask
    with `return_im`; an answer without it is not proof, so it is refused too.

    Raises:
        ChannelRejected: "refused: not a direct message".
    """
    if (
        isinstance(channel, Mapping)
        and channel.get("is_im") is True
        and isinstance(channel.get("id"), str)
        and _IM_ID.match(channel["id"])
    ):
        dm_id: str = channel["id"]
        return dm_id
    log.warning("delivery.chat_refused", channel=CHANNEL_NAME, delivery_id=delivery_id)
    raise ChannelRejected(NOT_A_DIRECT_MESSAGE)


def slack_error(
    code: object, *, delivery_id: str, method: str, retry_after: float | None = None
) -> ChannelError:
    """The channel error for an `ok: false` answer (see the module docstring)."""
    safe = code if isinstance(code, str) and _CODE.match(code) else "unknown_error"
    where = f"delivery {delivery_id}: Slack {method} answered {safe}"
    if safe in _USER_NOT_FOUND:
        return ChatUserNotFound(f"delivery {delivery_id}: no Slack user has that address")
    if safe in _RATE_LIMITED:
        return ChannelRetriable(where, retry_after=retry_after)
    if safe in _MISCONFIGURED:
        return ChannelRetriable(
            f"{where}: Slack is misconfigured (check channels.slack.bot_token and the app's "
            "scopes users:read.email, im:write, chat:write)",
            retry_after=retry_after,
        )
    if safe in _SLACK_DOWN:
        return ChannelRetriable(where, retry_after=retry_after)
    return ChannelRejected(where)


def channel_error(exc: ProviderError, *, delivery_id: str, method: str) -> ChannelError:
    """Map the shared HTTP client's errors (the status decided) to channel errors.

    A 500 is retried although the post may have happened: the worker's contract is
    at-least-once, and a second DM is better than an invitee without the link.
    """
    where = f"delivery {delivery_id}: Slack {method}"
    if isinstance(exc, ProviderRetriable):
        return ChannelRetriable(f"{where}: {exc.detail}", retry_after=exc.retry_after)
    if isinstance(exc, ProviderAuthFailed):
        return ChannelRetriable(f"{where}: Slack is misconfigured (token refused)")
    if type(exc) is ProviderError:  # a 5xx that is not 502/503/504
        return ChannelRetriable(f"{where}: {exc.detail}")
    return ChannelRejected(f"{where}: {exc.detail}")
