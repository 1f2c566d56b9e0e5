"""TeamsChatChannel against Prism serving the Graph v1.0 subset, plus its error mapping.

The subset rejects unknown scalar properties and its enums are case-sensitive, so a body
that passes with zero violations is close to what Graph accepts; the exact bodies are
asserted as well. The token endpoint is not in the spec: a local handler in the test's
transport answers it (no request leaves 127.0.0.1). Prism (static mode) answers
`POST /chats` with `{"id": "string", "chatType": "oneOnOne", ...}`, which is a one-to-one
chat; a group chat is produced by rewriting that answer after Prism validated the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from provisioner.delivery.base import ChannelRejected, ChannelRetriable, Method, Role
from provisioner.delivery.chat_config import ChatUserNotFound, TeamsChatConfig
from provisioner.delivery.render import default_template_dir, make_template_environment
from provisioner.delivery.teams_chat import NOT_A_DIRECT_MESSAGE, TeamsChatChannel
from tests.contract.channels import RecordingTransport
from tests.support import make_delivery_context
from tests.support.prism import SPECS, PrismServer, prism, violations

SPEC = SPECS / "msgraph" / "graph-v1.0-meetings-subset.json"
TOKEN_URL = "http://127.0.0.1:9/contoso.onmicrosoft.com/oauth2/v2.0/token"
SECRET = "client-secret-value"
GRAPH_TOKEN = "graph-access-token"
SENDER = "meetings-bot@contoso.onmicrosoft.com"

CHAT_BODY = {
    "chatType": "oneOnOne",
    "members": [
        {
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "roles": ["owner"],
            "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{SENDER}')",
        },
        {
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "roles": ["owner"],
            "user@odata.bind": "https://graph.microsoft.com/v1.0/users('ivan@example.org')",
        },
    ],
}

INVITATION_HTML = (
    "<p>Hana Host invited you to a meeting.</p>\n"
    "<p><strong>Quarterly review</strong><br>\n"
    "When: Tuesday 1 December 2026, 14:00–15:00 CET (Europe/Berlin)<br>\n"
    "Where: Jitsi</p>\n"
    '<p><a href="https://meet.example.org/room-7f3a?jwt=secret-token">Join the meeting</a></p>\n'
    "<p>Passcode: <code>831-552-09</code></p>\n"
    "<p><strong>This link is yours alone: do not forward it; a forwarded link identifies "
    "you.</strong></p>\n"
    "<p>Never post this link publicly. Anyone who has it can try to join.</p>"
)


@pytest.fixture(scope="module")
def graph_prism() -> Iterator[PrismServer]:
    with prism(SPEC) as server:
        yield server


def config(base_url: str, **overrides: Any) -> TeamsChatConfig:
    values: dict[str, Any] = {
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": SECRET,
        "sender_user_id": SENDER,
        "base_url": base_url,
        "token_url": TOKEN_URL,
    }
    return TeamsChatConfig(**(values | overrides))


def token_endpoint(request: httpx.Request) -> httpx.Response | None:
    if str(request.url) != TOKEN_URL:
        return None
    return httpx.Response(
        200, json={"access_token": GRAPH_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
    )


def chat_answer_as(chat_type: str) -> Any:
    def rewrite(request: httpx.Request, body: Any) -> Any:
        if request.url.path == "/chats":
            return {**body, "chatType": chat_type}
        return body

    return rewrite


def assert_valid_requests(transport: RecordingTransport) -> None:
    for exchange in transport.exchanges:
        assert violations(exchange.response) == [], exchange.path
        assert exchange.response.status_code == 201, exchange.path
        assert exchange.request.headers["authorization"] == f"Bearer {GRAPH_TOKEN}"


class TestTeamsChatAgainstPrism:
    async def test_token_chat_message_with_exact_bodies(self, graph_prism: PrismServer) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), local=token_endpoint)
        channel = TeamsChatChannel(config(graph_prism.base_url), transport=transport)
        try:
            receipt = await channel.send(make_delivery_context())
            await channel.send(make_delivery_context(delivery_id="dlv_0002"))
        finally:
            await channel.aclose()

        (token_request,) = transport.local_requests  # cached for the second send
        assert token_request.method == "POST"
        assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert "authorization" not in token_request.headers
        assert parse_qs(token_request.content.decode()) == {
            "client_id": ["11111111-2222-3333-4444-555555555555"],
            "client_secret": [SECRET],
            "grant_type": ["client_credentials"],
            "scope": ["https://graph.microsoft.com/.default"],
        }
        assert_valid_requests(transport)
        create, post = transport.exchanges[:2]
        assert (create.request.method, create.path) == ("POST", "/chats")
        assert create.json() == CHAT_BODY
        assert (post.request.method, post.path) == ("POST", "/chats/string/messages")
        assert post.json() == {"body": {"contentType": "html", "content": INVITATION_HTML}}
        assert receipt.channel == "teams_chat"
        assert receipt.message_id == "string:string"

    async def test_host_html_is_escaped_and_carries_the_summary(
        self, graph_prism: PrismServer
    ) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), local=token_endpoint)
        channel = TeamsChatChannel(config(graph_prism.base_url), transport=transport)
        context = make_delivery_context(role=Role.HOST, topic="<script>alert(1)</script>")
        try:
            await channel.send(context)
        finally:
            await channel.aclose()
        assert_valid_requests(transport)
        content = transport.exchanges[-1].json()["body"]["content"]
        assert "<script>" not in content
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
        assert "could not enforce" in content

    async def test_cancellation_has_no_link(self, graph_prism: PrismServer) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), local=token_endpoint)
        channel = TeamsChatChannel(config(graph_prism.base_url), transport=transport)
        try:
            await channel.send(make_delivery_context(method=Method.CANCEL))
        finally:
            await channel.aclose()
        assert_valid_requests(transport)
        content = transport.exchanges[-1].json()["body"]["content"]
        assert "meet.example.org" not in content
        assert "831-552-09" not in content
        assert "cancelled" in content

    @pytest.mark.parametrize("chat_type", ["group", "meeting", "unknownFutureValue"])
    async def test_a_chat_that_is_not_one_on_one_is_refused(
        self, graph_prism: PrismServer, chat_type: str
    ) -> None:
        transport = RecordingTransport(
            httpx.AsyncHTTPTransport(), local=token_endpoint, rewrite=chat_answer_as(chat_type)
        )
        channel = TeamsChatChannel(config(graph_prism.base_url), transport=transport)
        try:
            with pytest.raises(ChannelRejected) as raised:
                await channel.send(make_delivery_context())
        finally:
            await channel.aclose()
        assert str(raised.value) == NOT_A_DIRECT_MESSAGE
        assert_valid_requests(transport)
        assert [e.path for e in transport.exchanges] == ["/chats"]

    async def test_refresh_token_grant(self, graph_prism: PrismServer) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), local=token_endpoint)
        channel = TeamsChatChannel(
            config(graph_prism.base_url, grant="refresh_token", refresh_token="rt-1"),
            transport=transport,
        )
        try:
            await channel.send(make_delivery_context())
        finally:
            await channel.aclose()
        assert_valid_requests(transport)
        form = parse_qs(transport.local_requests[0].content.decode())
        assert form["grant_type"] == ["refresh_token"]
        assert form["refresh_token"] == ["rt-1"]
        assert form["scope"] == ["https://graph.microsoft.com/.default offline_access"]


def graph(
    *, chats: httpx.Response | None = None, messages: httpx.Response | None = None
) -> TeamsChatChannel:
    """The channel against a fake Graph that fails where told."""

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return httpx.Response(200, json={"access_token": GRAPH_TOKEN, "expires_in": 3600})
        if request.url.path == "/chats":
            return chats or httpx.Response(
                201, json={"id": "19:a_b@unq.gbl.spaces", "chatType": "oneOnOne"}
            )
        return messages or httpx.Response(201, json={"id": "1700000000000"})

    return TeamsChatChannel(config("http://127.0.0.1:9"), transport=httpx.MockTransport(handler))


def odata(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, json={"error": {"code": code, "message": "ivan@example.org"}}
    )


class TestTeamsChatErrorMapping:
    async def test_sends_into_the_chat_graph_returned(self) -> None:
        channel = graph()
        receipt = await channel.send(make_delivery_context())
        await channel.aclose()
        assert receipt.message_id == "19:a_b@unq.gbl.spaces:1700000000000"

    @pytest.mark.parametrize(
        "answer",
        [odata(404, "NotFound"), odata(400, "Request_ResourceNotFound")],
        ids=["404", "400-resource-not-found"],
    )
    async def test_unknown_user_is_typed_for_email_fallback(self, answer: httpx.Response) -> None:
        channel = graph(chats=answer)
        with pytest.raises(ChatUserNotFound) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert "ivan@example.org" not in str(raised.value)

    @pytest.mark.parametrize("status", [429, 503])
    async def test_throttling_is_retriable_after_retry_after(self, status: int) -> None:
        channel = graph(messages=odata(status, "TooManyRequests", **{"Retry-After": "12"}))
        with pytest.raises(ChannelRetriable) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert raised.value.retry_after == 12.0

    @pytest.mark.parametrize("status", [401, 403])
    async def test_refused_token_or_permission_is_retriable_misconfigured(
        self, status: int
    ) -> None:
        channel = graph(messages=odata(status, "Forbidden"))
        with pytest.raises(ChannelRetriable, match="misconfigured") as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert GRAPH_TOKEN not in str(raised.value)

    async def test_token_endpoint_refusal_is_retriable_misconfigured(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": SECRET}
            )

        channel = TeamsChatChannel(
            config("http://127.0.0.1:9"), transport=httpx.MockTransport(handler)
        )
        with pytest.raises(ChannelRetriable, match="misconfigured") as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert SECRET not in str(raised.value)

    async def test_500_is_retriable(self) -> None:
        channel = graph(chats=httpx.Response(500))
        with pytest.raises(ChannelRetriable):
            await channel.send(make_delivery_context())
        await channel.aclose()

    async def test_other_4xx_is_rejected(self) -> None:
        channel = graph(messages=odata(400, "BadRequest"))
        with pytest.raises(ChannelRejected) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert not isinstance(raised.value, ChatUserNotFound)

    def test_an_environment_without_autoescape_is_refused(self) -> None:
        templates = make_template_environment(default_template_dir())
        templates.autoescape = False
        with pytest.raises(ValueError, match="autoescape"):
            TeamsChatChannel(config("http://127.0.0.1:9"), templates=templates)
