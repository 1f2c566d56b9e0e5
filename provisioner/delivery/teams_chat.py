"""The Teams chat channel: one message in a one-to-one Teams chat with one person.

    POST <token endpoint>           form grant -> Graph access token (cached until expiry)
    POST /chats                     chatType oneOnOne, members: sender account + recipient
                                    (Graph returns the existing chat when there is one)
    POST /chats/{chat-id}/messages  body {contentType: "html", content: <autoescaped HTML>}

One-to-one chats only: the chat Graph hands back must say `chatType: "oneOnOne"`, or
nothing is posted. Group chats, meeting chats and team channels are refused, and there is
no setting that could name one.

Graph failures become the channel errors the worker understands:

    404 creating the chat, user not found   ChatUserNotFound (the worker falls back to email)
    429, 502/503/504, timeouts              ChannelRetriable(retry_after from Retry-After)
    401, 403, token refused                 ChannelRetriable ("misconfigured": permissions
                                            or secret; fixing config fixes it)
    anything else                           ChannelRejected

See docs/channels.md for which permissions Graph accepts for posting: with application
permissions (client credentials) Microsoft allows chat messages only for imports.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

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
from provisioner.delivery.chat_config import ChatUserNotFound, TeamsChatConfig
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
    ProviderNotFound,
    ProviderRetriable,
)
from provisioner.providers.http import (
    AccessToken,
    CachedTokenAuth,
    Circuit,
    ProviderHttp,
    RetryPolicy,
    TokenFetcher,
    token_response_body,
)

log = structlog.get_logger(__name__)

CHANNEL_NAME = "teams_chat"
NOT_A_DIRECT_MESSAGE = "refused: not a direct message"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Delegated refresh needs offline_access to get a new refresh token back.
DELEGATED_SCOPE = f"{GRAPH_SCOPE} offline_access"
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"

_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_USER_NOT_FOUND_CODES = frozenset(
    {"Request_ResourceNotFound", "ResourceNotFound", "NotFound", "UserNotFound"}
)
_TOPIC_LIMIT = 200


def _short(text: str) -> str:
    flat = single_line(text)
    return flat if len(flat) <= _TOPIC_LIMIT else flat[: _TOPIC_LIMIT - 1] + "…"


def message_values(context: DeliveryContext) -> dict[str, object]:
    """What the HTML templates see: raw values, escaped by Jinja's autoescape.

    Invitees get no security summary (see the email channel for why).

    Raises:
        ChannelRejected: the join link is not http(s) or the time zone is unknown.
    """
    is_host = context.role is Role.HOST
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
        "topic": _short(context.topic),
        "when": when,
        "provider": provider_label(context.provider),
        "organizer": single_line(context.organizer.name) or context.organizer.email,
        "recipient": single_line(context.recipient.name) or context.recipient.email,
        "personal": context.personal,
        "personal_notice": PERSONAL_NOTICE,
        "public_notice": PUBLIC_NOTICE,
        "enforced": describe_enforced(context.settings, context.not_enforced) if is_host else [],
        "not_enforced": describe_not_enforced(context.not_enforced) if is_host else [],
    }
    if context.method is Method.REQUEST:
        # A `javascript:` link from a broken provider would otherwise become clickable.
        if urlsplit(context.join.url).scheme not in {"https", "http"}:
            raise ChannelRejected("the join link is not an http(s) URL")
        values["join_url"] = context.join.url
        values["passcode"] = context.join.passcode or ""
    return values


def render_teams_html(context: DeliveryContext, templates: jinja2.Environment) -> str:
    """The chat message's HTML: `chat/invitation.html`, or `chat/cancellation.html`
    (no link) for a cancellation.

    Raises:
        ChannelRejected: see `message_values`.
        ValueError: the environment would not autoescape the template (user input
            would reach Teams as markup).
    """
    kind = "invitation" if context.method is Method.REQUEST else "cancellation"
    name = f"chat/{kind}.html"
    require_autoescape(templates, name)
    values = message_values(context)
    host_copy = context.role is Role.HOST and context.method is Method.REQUEST
    # The card and the emergency links are the host's alone (see the email channel).
    values["briefing"] = load_briefing(templates, context.provider) if host_copy else None
    values["actions"] = list(context.actions) if host_copy else []
    return templates.get_template(name).render(values).strip()


def require_autoescape(templates: jinja2.Environment, name: str) -> None:
    """Refuse an environment that would not autoescape `name`: a topic like
    `<img src=x onerror=...>` must reach Teams as text, not markup."""
    setting = templates.autoescape
    escapes = setting(name) if callable(setting) else bool(setting)
    if not escapes:
        raise ValueError(f"the template environment does not autoescape {name}")


def odata_user(base: str, user: str) -> str:
    """`<base>/users('<user>')`; a quote in the key is doubled, as OData literals need."""
    return f"{base}/users('{user.replace(chr(39), chr(39) * 2)}')"


def chat_body(config: TeamsChatConfig, recipient: str) -> dict[str, Any]:
    """The POST /chats body: a oneOnOne chat between the sender account and `recipient`."""
    return {
        "chatType": "oneOnOne",
        "members": [
            {
                "@odata.type": MEMBER_TYPE,
                "roles": ["owner"],
                "user@odata.bind": odata_user(config.bind_base, user),
            }
            for user in (config.sender_user_id, recipient)
        ],
    }


def token_from_response(response: httpx.Response, *, clock: Callable[[], float]) -> AccessToken:
    """An `AccessToken` from an OAuth 2.0 token response (RFC 6749 5.1/5.2).

    Raises:
        ProviderRetriable: the token endpoint is overloaded or down.
        ProviderAuthFailed: the credentials were refused (the message names the OAuth
            error code only: the description can quote the client id).
    """
    status = response.status_code
    body = token_response_body(response, provider=CHANNEL_NAME)
    if status != 200 or not isinstance(body, dict):
        code = body.get("error") if isinstance(body, dict) else None
        shown = f", {code}" if isinstance(code, str) and _CODE.match(code) else ""
        raise ProviderAuthFailed(
            f"{CHANNEL_NAME}: token request refused ({status}{shown})", provider=CHANNEL_NAME
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise ProviderAuthFailed(
            f"{CHANNEL_NAME}: token response has no access_token", provider=CHANNEL_NAME
        )
    try:
        seconds = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        seconds = 3600.0
    return AccessToken(value=value, expires_at=clock() + seconds)


def token_fetcher(
    config: TeamsChatConfig, *, clock: Callable[[], float] = time.time
) -> TokenFetcher:
    """The configured grant as a `CachedTokenAuth` fetcher.

    With `refresh_token`, the newest refresh token Entra ID returns is kept in memory and
    used next, because Entra ID may rotate it.
    """
    refresh: list[str] = (
        [config.refresh_token.get_secret_value()] if config.refresh_token is not None else []
    )

    async def fetch(client: httpx.AsyncClient) -> AccessToken:
        form = {
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        }
        if config.grant == "refresh_token":
            form |= {
                "grant_type": "refresh_token",
                "refresh_token": refresh[0],
                "scope": DELEGATED_SCOPE,
            }
        else:
            form |= {"grant_type": "client_credentials", "scope": GRAPH_SCOPE}
        # auth=None: the token request must not go through the bearer auth it feeds.
        response = await client.request("POST", config.resolved_token_url, auth=None, data=form)
        token = token_from_response(response, clock=clock)
        if config.grant == "refresh_token":
            rotated = response.json().get("refresh_token")
            if isinstance(rotated, str) and rotated:
                refresh[0] = rotated
        return token

    return fetch


class TeamsChatChannel:
    """Sends each delivery as a message in the one-to-one Teams chat between the sender
    account and its one recipient."""

    name = CHANNEL_NAME

    def __init__(
        self,
        config: TeamsChatConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        templates: jinja2.Environment | None = None,
        auth: httpx.Auth | None = None,
        circuit: Circuit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the channel; nothing connects until the first send.

        Args:
            config: the validated `[channels.teams_chat]` settings.
            transport: where HTTP requests go, the token request included (tests:
                Prism behind a router that answers the token endpoint locally).
            templates: the environment holding `chat/*.html`; it must autoescape them.
            auth: replaces the token auth built from `config`.
            circuit: the circuit breaker; by default 5 failures open it for 30 s.
            clock: the time source for token expiry.

        Raises:
            ValueError: `templates` would not autoescape the chat HTML templates.
        """
        self._config = config
        self._templates = (
            templates
            if templates is not None
            else make_template_environment(default_template_dir())
        )
        for kind in ("invitation", "cancellation"):
            require_autoescape(self._templates, f"chat/{kind}.html")
        self.auth = auth or CachedTokenAuth(
            token_fetcher(config, clock=clock), client=lambda: self._http.client, clock=clock
        )
        self._http = ProviderHttp(
            CHANNEL_NAME,
            base_url=config.api_base,
            auth=self.auth,
            transport=transport,
            timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
            retry=RetryPolicy(max_attempts=1),  # the worker retries, with backoff
            circuit=circuit,
            map_error=graph_error,
        )

    @classmethod
    def from_settings(cls, config: TeamsChatConfig) -> TeamsChatChannel:
        """The channel as the app builds it (the entry-point constructor)."""
        return cls(config)

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        """Create or get the one-to-one chat, check it is one, post the message.

        Returns:
            A receipt whose message id is `<chat id>:<message id>`.

        Raises:
            ChatUserNotFound: Graph knows no user with the recipient's address.
            ChannelRetriable: throttled, Graph down, or permissions/secret wrong.
            ChannelRejected: the chat is not one-to-one, or Graph refused the message.
        """
        html = render_teams_html(context, self._templates)
        chat = await self._call(
            "POST",
            "/chats",
            context,
            json=chat_body(self._config, context.recipient.email),
            creating_chat=True,
        )
        chat_id = require_one_on_one(chat, delivery_id=context.delivery_id)
        message = await self._call(
            "POST",
            f"/chats/{quote(chat_id, safe=':@._-')}/messages",
            context,
            json={"body": {"contentType": "html", "content": html}},
        )
        message_id = message.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise ChannelRetriable(f"delivery {context.delivery_id}: Graph sent no message id")
        log.info("delivery.chat_sent", channel=CHANNEL_NAME, delivery_id=context.delivery_id)
        return DeliveryReceipt(channel=CHANNEL_NAME, message_id=f"{chat_id}:{message_id}")

    async def _call(
        self,
        method: str,
        path: str,
        context: DeliveryContext,
        *,
        json: Mapping[str, Any],
        creating_chat: bool = False,
    ) -> Mapping[str, Any]:
        try:
            response = await self._http.request(method, path, json=dict(json), expect=(200, 201))
        except ProviderError as exc:
            raise graph_channel_error(
                exc, delivery_id=context.delivery_id, creating_chat=creating_chat
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise ChannelRetriable(f"delivery {context.delivery_id}: Graph answered without JSON")
        return body

    async def aclose(self) -> None:
        await self._http.aclose()


def require_one_on_one(chat: Mapping[str, Any], *, delivery_id: str) -> str:
    """The chat id, if Graph says the chat is one-to-one.

    Raises:
        ChannelRejected: "refused: not a direct message" for a group, meeting or any
            other chat type, or an answer without a chat id.
    """
    chat_id = chat.get("id")
    if chat.get("chatType") == "oneOnOne" and isinstance(chat_id, str) and chat_id:
        return chat_id
    log.warning("delivery.chat_refused", channel=CHANNEL_NAME, delivery_id=delivery_id)
    raise ChannelRejected(NOT_A_DIRECT_MESSAGE)


def graph_error(response: httpx.Response) -> ProviderError | None:
    """Recognise Graph's "user not found" answers that do not come as a plain 404."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code in _USER_NOT_FOUND_CODES:
        return ProviderNotFound(
            f"{CHANNEL_NAME}: Graph answered {response.status_code} {code}", provider=CHANNEL_NAME
        )
    return None


def graph_channel_error(
    exc: ProviderError, *, delivery_id: str, creating_chat: bool
) -> ChannelError:
    """Map the shared HTTP client's errors to channel errors (module docstring).

    A 404 while creating the chat means a member could not be resolved, i.e. the
    recipient (the sender account is checked by the operator once). A 404 when posting
    means the chat Graph just returned is not visible yet, which passes.
    """
    where = f"delivery {delivery_id}: Graph"
    if isinstance(exc, ProviderRetriable):
        return ChannelRetriable(f"{where}: {exc.detail}", retry_after=exc.retry_after)
    if isinstance(exc, ProviderAuthFailed):
        return ChannelRetriable(
            f"{where}: Teams chat is misconfigured (secret, grant or permissions "
            f"Chat.Create / ChatMessage.Send): {exc.detail}"
        )
    if isinstance(exc, ProviderNotFound):
        if creating_chat:
            return ChatUserNotFound(f"{where}: no Teams user has that address")
        return ChannelRetriable(f"{where}: the chat is not available yet")
    if type(exc) is ProviderError:  # a 500: Graph failed before or after acting
        return ChannelRetriable(f"{where}: {exc.detail}")
    return ChannelRejected(f"{where}: {exc.detail}")
