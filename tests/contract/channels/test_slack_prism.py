"""SlackChannel against Prism serving the Slack Web API subset, plus its error mapping.

Prism checks each request against Slack's own spec (zero violations asserted); the spec
accepts unknown properties, so the exact JSON bodies are asserted as well. Prism's canned
`conversations.open` answer is `{"channel": {"id": "D069C7QFK"}, "ok": true}`: it lacks
`is_im`, so the channel must refuse it; the happy path rewrites that one answer into a
full IM object after Prism has validated the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from provisioner.delivery.base import ChannelRejected, ChannelRetriable, Method
from provisioner.delivery.chat_config import ChatUserNotFound, SlackConfig
from provisioner.delivery.slack import NOT_A_DIRECT_MESSAGE, SlackChannel
from tests.contract.channels import RecordingTransport
from tests.support import make_delivery_context
from tests.support.prism import SPECS, PrismServer, prism, violations

SPEC = SPECS / "slack" / "slack-web-delivery-subset.oas3.json"
TOKEN = "xoxb-test-token"
PRISM_USER = "W012A3CDE"  # the user id in the spec's users.lookupByEmail example
PRISM_DM = "D069C7QFK"  # the id in the spec's conversations.open example

INVITATION_BODY = {
    "channel": PRISM_DM,
    "text": "Invitation: Quarterly review",
    "blocks": [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "Hana Host invited you to a meeting.\n*Quarterly review*\n"
                "*When:* Tuesday 1 December 2026, 14:00–15:00 CET (Europe/Berlin)\n"
                "*Where:* Jitsi",
            },
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "<https://meet.example.org/room-7f3a?jwt=secret-token|Join the meeting>"
                "\n*Passcode:* `831-552-09`",
            },
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*This link is yours alone: do not forward it; a forwarded link "
                "identifies you.*\nNever post this link publicly. Anyone who has it can "
                "try to join.",
            },
        },
    ],
    "unfurl_links": False,
    "unfurl_media": False,
}


@pytest.fixture(scope="module")
def slack_prism() -> Iterator[PrismServer]:
    with prism(SPEC) as server:
        yield server


def config(base_url: str) -> SlackConfig:
    return SlackConfig(bot_token=TOKEN, base_url=base_url)


def open_answer_as(channel: dict[str, Any]) -> Any:
    """A rewrite that replaces only conversations.open's answer with `channel`."""

    def rewrite(request: httpx.Request, body: Any) -> Any:
        if request.url.path == "/conversations.open":
            return {"ok": True, "channel": channel}
        return body

    return rewrite


IM = {"id": PRISM_DM, "is_im": True, "user": PRISM_USER, "created": "1460147748"}


def assert_valid_requests(transport: RecordingTransport) -> None:
    for exchange in transport.exchanges:
        assert violations(exchange.response) == [], exchange.path
        assert exchange.response.status_code == 200, exchange.path
        assert exchange.request.headers["authorization"] == f"Bearer {TOKEN}"


class TestSlackAgainstPrism:
    async def test_lookup_open_post_sends_exact_bodies(self, slack_prism: PrismServer) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), rewrite=open_answer_as(IM))
        channel = SlackChannel(config(slack_prism.base_url), transport=transport)
        try:
            receipt = await channel.send(make_delivery_context())
        finally:
            await channel.aclose()

        assert_valid_requests(transport)
        lookup, open_, post = transport.exchanges
        assert (lookup.request.method, lookup.path) == ("GET", "/users.lookupByEmail")
        assert dict(lookup.request.url.params) == {"email": "ivan@example.org"}
        assert lookup.request.content == b""
        assert (open_.request.method, open_.path) == ("POST", "/conversations.open")
        assert open_.json() == {"users": PRISM_USER, "return_im": True}
        assert (post.request.method, post.path) == ("POST", "/chat.postMessage")
        assert post.request.headers["content-type"] == "application/json; charset=utf-8"
        assert post.json() == INVITATION_BODY
        assert receipt.channel == "slack"
        assert receipt.message_id == f"{PRISM_DM}:1503435956.000247"

    async def test_prisms_canned_open_answer_is_not_proof_of_a_dm(
        self, slack_prism: PrismServer
    ) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport())
        channel = SlackChannel(config(slack_prism.base_url), transport=transport)
        try:
            with pytest.raises(ChannelRejected) as raised:
                await channel.send(make_delivery_context())
        finally:
            await channel.aclose()
        assert str(raised.value) == NOT_A_DIRECT_MESSAGE
        assert_valid_requests(transport)
        assert [e.path for e in transport.exchanges] == [
            "/users.lookupByEmail",
            "/conversations.open",
        ]

    @pytest.mark.parametrize(
        "conversation",
        [
            pytest.param({"id": "C012AB3CD", "is_channel": True, "is_im": False}, id="public"),
            pytest.param({"id": "G012AB3CD", "is_group": True, "is_im": False}, id="private"),
            pytest.param({"id": "G012AB3CE", "is_mpim": True, "is_im": False}, id="group-dm"),
            pytest.param({"id": "C012AB3CD", "is_im": True}, id="im-flag-on-a-channel-id"),
        ],
    )
    async def test_a_channel_destination_is_refused(
        self, slack_prism: PrismServer, conversation: dict[str, Any]
    ) -> None:
        transport = RecordingTransport(
            httpx.AsyncHTTPTransport(), rewrite=open_answer_as(conversation)
        )
        channel = SlackChannel(config(slack_prism.base_url), transport=transport)
        try:
            with pytest.raises(ChannelRejected, match="^refused: not a direct message$"):
                await channel.send(make_delivery_context())
        finally:
            await channel.aclose()
        assert_valid_requests(transport)
        assert "/chat.postMessage" not in [e.path for e in transport.exchanges]

    async def test_cancellation_has_no_link(self, slack_prism: PrismServer) -> None:
        transport = RecordingTransport(httpx.AsyncHTTPTransport(), rewrite=open_answer_as(IM))
        channel = SlackChannel(config(slack_prism.base_url), transport=transport)
        try:
            await channel.send(make_delivery_context(method=Method.CANCEL))
        finally:
            await channel.aclose()
        assert_valid_requests(transport)
        post = transport.exchanges[-1]
        assert post.json()["text"] == "Cancelled: Quarterly review"
        assert b"meet.example.org" not in post.request.content
        assert b"831-552-09" not in post.request.content


def mock_channel(handler: Any) -> SlackChannel:
    return SlackChannel(config("http://127.0.0.1:9"), transport=httpx.MockTransport(handler))


def ok_until(failing_method: str, answer: httpx.Response) -> Any:
    """Slack answering every call normally except `failing_method`."""

    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.lstrip("/")
        if method == failing_method:
            return answer
        if method == "users.lookupByEmail":
            return httpx.Response(200, json={"ok": True, "user": {"id": "U0123ABC"}})
        if method == "conversations.open":
            return httpx.Response(200, json={"ok": True, "channel": {"id": "D0123", "is_im": True}})
        return httpx.Response(200, json={"ok": True, "channel": "D0123", "ts": "1.2"})

    return handler


class TestSlackErrorMapping:
    async def test_users_not_found_is_typed_for_email_fallback(self) -> None:
        channel = mock_channel(
            ok_until(
                "users.lookupByEmail",
                httpx.Response(200, json={"ok": False, "error": "users_not_found"}),
            )
        )
        with pytest.raises(ChatUserNotFound) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert isinstance(raised.value, ChannelRejected)
        assert "ivan@example.org" not in str(raised.value)

    @pytest.mark.parametrize("method", ["users.lookupByEmail", "chat.postMessage"])
    async def test_http_429_is_retriable_after_retry_after(self, method: str) -> None:
        answer = httpx.Response(
            429, headers={"Retry-After": "17"}, json={"ok": False, "error": "ratelimited"}
        )
        channel = mock_channel(ok_until(method, answer))
        with pytest.raises(ChannelRetriable) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert raised.value.retry_after == 17.0

    async def test_ratelimited_body_is_retriable(self) -> None:
        answer = httpx.Response(
            200, headers={"Retry-After": "3"}, json={"ok": False, "error": "ratelimited"}
        )
        channel = mock_channel(ok_until("chat.postMessage", answer))
        with pytest.raises(ChannelRetriable) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert raised.value.retry_after == 3.0

    @pytest.mark.parametrize("code", ["invalid_auth", "not_authed", "missing_scope"])
    async def test_bad_token_is_retriable_and_says_misconfigured(self, code: str) -> None:
        answer = httpx.Response(200, json={"ok": False, "error": code})
        channel = mock_channel(ok_until("users.lookupByEmail", answer))
        with pytest.raises(ChannelRetriable, match="misconfigured") as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert TOKEN not in str(raised.value)

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_5xx_is_retriable(self, status: int) -> None:
        channel = mock_channel(ok_until("conversations.open", httpx.Response(status)))
        with pytest.raises(ChannelRetriable):
            await channel.send(make_delivery_context())
        await channel.aclose()

    async def test_connect_error_is_retriable(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        channel = mock_channel(handler)
        with pytest.raises(ChannelRetriable):
            await channel.send(make_delivery_context())
        await channel.aclose()

    async def test_other_errors_are_rejected(self) -> None:
        answer = httpx.Response(200, json={"ok": False, "error": "msg_too_long"})
        channel = mock_channel(ok_until("chat.postMessage", answer))
        with pytest.raises(ChannelRejected) as raised:
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert not isinstance(raised.value, ChatUserNotFound)

    async def test_a_user_id_that_would_open_a_group_dm_is_refused(self) -> None:
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return httpx.Response(200, json={"ok": True, "user": {"id": "U01,U02"}})

        channel = mock_channel(handler)
        with pytest.raises(ChannelRejected):
            await channel.send(make_delivery_context())
        await channel.aclose()
        assert calls == ["/users.lookupByEmail"]

    async def test_a_javascript_link_is_refused_before_any_call(self) -> None:
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return httpx.Response(500)

        from provisioner.providers.base import JoinDetails

        channel = mock_channel(handler)
        with pytest.raises(ChannelRejected):
            await channel.send(make_delivery_context(join=JoinDetails(url="javascript:alert(1)")))
        await channel.aclose()
        assert calls == []
