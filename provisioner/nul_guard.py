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
multipart body is split into its parts only when it holds a zero byte, and only its text
fields are refused: a file part (one with a filename) may hold NUL bytes legitimately.
Any page form can be sent as multipart, so the forms' text is guarded whatever the
encoding (the body-size limit outside this middleware bounds what is read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.errors import FieldError
from provisioner.problems import problem

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
        kind = _body_kind(scope)
        if kind is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left mid-body; answered as the app's parser would
            await _refuse(scope, receive, send, "body", "the body was incomplete")
            return
        if isinstance(kind, bytes):
            field = _in_multipart(body, boundary=kind)
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


def _body_kind(scope: Scope) -> str | bytes | None:
    """ "json", "form", a multipart body's boundary, or None for a body not looked at."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return None
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media == b"application/json" or media.endswith(b"+json"):
                return "json"
            if media == b"application/x-www-form-urlencoded":
                return "form"
            if media == b"multipart/form-data":
                boundary = _BOUNDARY.search(value)
                return (boundary.group(1) or boundary.group(2)) if boundary else None
            return None
    return None


_BOUNDARY = re.compile(rb'boundary=(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)
_PART_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


def _in_multipart(body: bytes, *, boundary: bytes) -> str | None:
    """The first text field of a multipart form holding a NUL byte (files may hold them)."""
    if b"\x00" not in body:
        return None
    for part in body.split(b"--" + boundary):
        head, blank_line, content = part.partition(b"\r\n\r\n")
        if not blank_line or (b"\x00" not in content and b"\x00" not in head):
            continue
        disposition = next(
            (
                line
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            b"",
        )
        if b"filename" in disposition.lower() and b"\x00" not in head:
            continue  # a file's bytes are the file's business
        name = _PART_NAME.search(disposition)
        return (
            name.group(1).replace(b"\x00", b"").decode("utf-8", "replace") if name else ""
        ) or "body"
    return None


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
