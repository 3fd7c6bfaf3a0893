"""The harness's TCP proxy: forwards both ways; a cut refuses new connections and resets open
ones; a heal listens again on the same port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from geosaga.devserver import free_port
from geosaga.torture.proxy import Proxies


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest_asyncio.fixture
async def proxies() -> AsyncIterator[tuple[Proxies, int]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    upstream = server.sockets[0].getsockname()[1]
    running = Proxies()
    port = free_port()
    await running.add("echo", port, ("127.0.0.1", upstream))
    try:
        yield running, port
    finally:
        await running.close()
        server.close()
        await server.wait_closed()


async def _round_trip(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(message)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readexactly(len(message)), 10)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_a_proxy_forwards_both_ways(proxies: tuple[Proxies, int]) -> None:
    _, port = proxies
    assert await _round_trip(port, b"hello" * 10_000) == b"hello" * 10_000


async def test_a_cut_resets_open_connections_and_refuses_new_ones(
    proxies: tuple[Proxies, int],
) -> None:
    running, port = proxies
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"

    assert await running.cut("echo") == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(4), 10)
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)

    await running.heal("echo")
    assert await _round_trip(port, b"again") == b"again"
