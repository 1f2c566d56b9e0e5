"""The default provider transport (httpx over aiohttp) against real loopback sockets.

The retry policy reads every network failure as an `httpx.TransportError`; these tests
make sure that holds on the transport we ship, for a refused connection, a server that
answers garbage, and one that never answers -- and that a plain answer comes through.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from provisioner.providers.errors import ProviderRetriable
from provisioner.providers.http import ProviderHttp, ProviderTransport, RetryPolicy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    listener = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        await listener.wait_closed()


async def no_sleep(_: float) -> None:
    return None


def client(base_url: str, *, read_timeout: float = 5.0) -> ProviderHttp:
    return ProviderHttp(
        "test",
        base_url=base_url,
        timeout=httpx.Timeout(connect=2.0, read=read_timeout, write=2.0, pool=2.0),
        retry=RetryPolicy(max_attempts=2),
        sleep=no_sleep,
    )


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


class TestProviderTransport:
    def test_is_the_default(self) -> None:
        http = client("http://127.0.0.1:9")
        assert isinstance(http.client._transport, ProviderTransport)

    async def test_a_plain_answer_comes_through(self) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()

        async with server(answer) as url:
            http = client(url)
            try:
                response = await http.request("GET", "/thing")
            finally:
                await http.aclose()
        assert response.json() == {"ok": True}

    async def test_refused_connection_is_retriable(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # closed again before the call: nothing listens
        http = client(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(ProviderRetriable) as raised:
                await http.request("GET", "/thing?token=do-not-log")
        finally:
            await http.aclose()
        assert "do-not-log" not in str(raised.value)

    async def test_garbage_answer_is_retriable_not_a_raw_aiohttp_error(self) -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        async with server(garbage) as url:
            http = client(url)
            try:
                with pytest.raises(ProviderRetriable):
                    await http.request("GET", "/thing")
            finally:
                await http.aclose()

    async def test_silent_server_times_out_as_retriable(self) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await asyncio.sleep(5)
            writer.close()

        async with server(silent) as url:
            http = client(url, read_timeout=0.2)
            try:
                with pytest.raises(ProviderRetriable):
                    await http.request("GET", "/thing")
            finally:
                await http.aclose()
