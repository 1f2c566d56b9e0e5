"""The NUL guard at the ASGI level: bodies in several chunks, a client that leaves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from provisioner.nul_guard import NulGuardMiddleware


class RecordingApp:
    """Reads the whole body as an app would, and remembers what it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope(body_type: bytes = b"application/json") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/meetings",
        "query_string": b"",
        "headers": [(b"content-type", body_type)],
        "state": {},
    }


async def run(
    messages: list[Message], body_type: bytes = b"application/json"
) -> tuple[RecordingApp, list[Message]]:
    app = RecordingApp()
    incoming = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await NulGuardMiddleware(app)(scope(body_type), receive, send)
    return app, sent


async def test_a_body_in_chunks_reaches_the_app_whole() -> None:
    chunks = [b'{"topic": "plan', b'ning", "x": ', b"1}"]
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    app, sent = await run(messages)
    assert app.bodies == [b'{"topic": "planning", "x": 1}']
    assert sent[0]["status"] == 204


async def test_nul_split_across_chunks_is_still_found() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"topic": "a\\u00', "more_body": True},
        {"type": "http.request", "body": b'00b"}', "more_body": False},
    ]
    app, sent = await run(messages)
    assert app.bodies == [] and sent[0]["status"] == 422


async def test_a_client_that_leaves_mid_body_never_reaches_the_app() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"topic": "a', "more_body": True},
        {"type": "http.disconnect"},
    ]
    app, sent = await run(messages)
    # Answered (to nobody) as the app's own parser would: a 422, not an access-log 500.
    assert app.bodies == [] and sent[0]["status"] == 422


async def test_utf16_json_with_nul_is_refused() -> None:
    body = json.dumps({"topic": "a\x00b"}).encode("utf-16-le")
    app, sent = await run([{"type": "http.request", "body": body, "more_body": False}])
    assert app.bodies == [] and sent[0]["status"] == 422
    assert json.loads(sent[1]["body"])["errors"][0]["field"] == "topic"


async def test_json_nested_too_deep_to_parse_is_left_to_the_app() -> None:
    body = b"[" * 5000 + b'"\\u0000"' + b"]" * 5000
    app, sent = await run([{"type": "http.request", "body": body, "more_body": False}])
    assert app.bodies == [body] and sent[0]["status"] == 204


async def test_other_bodies_are_not_read_by_the_guard() -> None:
    messages: list[Message] = [{"type": "http.request", "body": b"\x00\x00", "more_body": False}]
    app, sent = await run(messages, body_type=b"application/octet-stream")
    assert app.bodies == [b"\x00\x00"] and sent[0]["status"] == 204


MULTIPART = b'multipart/form-data; boundary="b0undary"'


def multipart(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart body from (Content-Disposition parameters, content) pairs."""
    body = b"".join(
        b"--b0undary\r\nContent-Disposition: form-data; " + params + b"\r\n\r\n" + content + b"\r\n"
        for params, content in parts
    )
    return body + b"--b0undary--\r\n"


async def test_a_multipart_text_field_with_nul_is_refused_by_name() -> None:
    body = multipart((b'name="csrf_token"', b"t"), (b'name="law_enforcement_reference"', b"a\x00b"))
    app, sent = await run([{"type": "http.request", "body": body}], body_type=MULTIPART)
    assert app.bodies == [] and sent[0]["status"] == 422
    problem = json.loads(sent[1]["body"])
    assert problem["errors"][0]["field"] == "law_enforcement_reference"


async def test_a_multipart_file_may_hold_nul_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    body = multipart((b'name="summary"', b"fine"), (b'name="files"; filename="a.png"', png))
    app, sent = await run([{"type": "http.request", "body": body}], body_type=MULTIPART)
    assert app.bodies == [body] and sent[0]["status"] == 204


@pytest.mark.parametrize(
    ("content_type", "disposition", "text"),
    [
        # Each read the form's text field past a hand-made parser; the app's parser reads
        # them all as text, so the guard (now the same parser) refuses them all.
        (b"multipart/form-data; boundary = b0undary", b'name="note"', b"a\x00b"),
        (MULTIPART, b'name="note"; x="filename"', b"a\x00b"),
        (b"multipart/form-data; boundary=b0undary; charset=utf-7", b'name="note"', b"a+AAA-b"),
    ],
)
async def test_multipart_is_read_as_the_app_reads_it(
    content_type: bytes, disposition: bytes, text: bytes
) -> None:
    body = multipart((disposition, text))
    app, sent = await run([{"type": "http.request", "body": body}], body_type=content_type)
    assert app.bodies == [] and sent[0]["status"] == 422
    assert json.loads(sent[1]["body"])["errors"][0]["field"] == "note"
