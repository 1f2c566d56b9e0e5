"""Refuse the NUL character (U+0000) wherever a request could carry it into text.

PostgreSQL's text types cannot hold NUL: a topic, a note or a path id with one failed as
a database error, a 500. SQLite stores it, and from there it would reach e-mails, .ics
files and chat messages. No field of ours has a use for it, so it is refused at the door
with a 422 `invalid-request` problem naming where it was: the parameter, or the body
field's path (`invitees[0].name`), as every other validation error does.

What is looked at: the path, the query string, and bodies sent as JSON, as a
URL-encoded form or as a multipart form. UTF-8 JSON can carry NUL only as the escape
`\\u0000`, so a body without those six bytes (or a zero byte, as UTF-16 and UTF-32 JSON
have) is passed on untouched after a substring search; only a suspicious body is parsed to
name the field (and passed on if the bytes were an escaped backslash after all). A
multipart body is parsed, with the app's own multipart parser, only when it holds a zero
byte or declares a charset other than UTF-8, and only its text fields are refused: a file
part (one with a filename) may hold NUL bytes legitimately.
Any page form can be sent as multipart, so the forms' text is guarded whatever the
encoding (the body-size limit outside this middleware bounds what is read).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.errors import FieldError
from provisioner.problems import problem

if TYPE_CHECKING:  # a TypedDict python-multipart declares for type checkers only
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["NulGuardMiddleware"]

NUL = "\x00"
_REASON = "must not contain the NUL character (U+0000)"


class NulGuardMiddleware:
    """The ASGI middleware; it reads a JSON or form body whole before the app does, which
    the app would do anyway, and hands the app the same bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _in_url(scope)
        if field is not None:
            await _refuse(scope, receive, send, field)
            return
        content_type = _content_type(scope)
        kind = _body_kind(scope["method"], content_type)
        if kind is None or content_type is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left mid-body; answered as the app's parser would
            await _refuse(scope, receive, send, "body", "the body was incomplete")
            return
        if kind == "multipart":
            field = _in_multipart(body, content_type)
        elif kind == "json":
            field = _in_json(body)
        else:
            field = _in_urlencoded(body, fallback="body")
        if field is not None:
            await _refuse(scope, receive, send, field)
            return
        await self.app(scope, _replay(body, receive), send)


def _in_url(scope: Scope) -> str | None:
    if NUL in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    return _in_urlencoded(query, fallback="query")


def _in_urlencoded(data: bytes, *, fallback: str) -> str | None:
    """The first field of `a=1&b=2` data (a query, a form) holding a NUL, raw or `%00`."""
    if b"%00" not in data and b"\x00" not in data:
        return None
    for name, value in parse_qsl(data.decode("latin-1"), keep_blank_values=True):
        if NUL in name or NUL in value:
            return name.replace(NUL, "") or fallback
    return None


def _body_kind(method: str, content_type: bytes | None) -> str | None:
    """Which body is looked at: "json", "form", "multipart", or None."""
    if method in ("GET", "HEAD", "OPTIONS") or content_type is None:
        return None
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return "json"
    if media == b"application/x-www-form-urlencoded":
        return "form"
    if media == b"multipart/form-data":
        return "multipart"
    return None


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            header: bytes = value
            return header
    return None


def _in_multipart(body: bytes, content_type: bytes) -> str | None:
    """The first text field of a multipart form holding a NUL (files may hold them).

    Read with the parser the app's forms use, driven as Starlette drives it (the boundary
    and each part's Content-Disposition through `parse_options_header`, a part with a
    `filename` parameter is a file, text decoded with the body's charset): a guard that
    split the body its own way would see other parts than the app does.
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    charset = _charset(params.get(b"charset"))
    if not boundary or (b"\x00" not in body and charset == "utf-8"):
        return None  # no boundary: the app refuses the form itself
    found: list[str] = []
    part = _Part()

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        if part.header_name.lower() == b"content-disposition":
            part.disposition = part.header_value
        part.header_name, part.header_value = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part.data += data[start:end]

    def on_part_end() -> None:
        _, options = parse_options_header(part.disposition)
        name = _decode(options.get(b"name", b""), charset)
        if b"filename" not in options and (NUL in name or NUL in _decode(part.data, charset)):
            found.append(name.replace(NUL, "") or "body")

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError:
        return None  # malformed: the app's own parser answers that
    return found[0] if found else None


@dataclass
class _Part:
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    data: bytes = b""


def _charset(value: bytes | None) -> str:
    """The body's charset as Starlette resolves it (UTF-8 by default, unknown: Latin-1)."""
    if value is None:
        return "utf-8"
    try:
        return codecs.lookup(value.decode("latin-1")).name
    except LookupError:
        return "latin-1"


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client disconnected before sending all of it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body in one message, then whatever the client sends next (its disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


def _in_json(body: bytes) -> str | None:
    # UTF-8 JSON carries NUL only as the escape; UTF-16 and UTF-32 JSON (which the app's
    # parser also reads) have zero bytes in every character, so they are always parsed.
    if b"\\u0000" not in body and b"\x00" not in body:
        return None
    try:
        return next(_paths_with_nul(json.loads(body), ""), None)
    except (ValueError, RecursionError):
        return None  # not JSON, or nested too deep: the app's own parser answers that


def _paths_with_nul(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if NUL in value:
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                yield name.replace(NUL, "")
            yield from _paths_with_nul(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths_with_nul(item, f"{path}[{index}]")


async def _refuse(
    scope: Scope, receive: Receive, send: Send, field: str, reason: str = _REASON
) -> None:
    response = problem(
        Request({**scope, "path": scope["path"].replace(NUL, "")}),  # `instance` without it
        status=422,
        code="invalid-request",
        title="The request is not valid",
        detail=f"1 field(s) are invalid: {field}",
        errors=(FieldError(field, reason),),
    )
    await response(scope, receive, send)
