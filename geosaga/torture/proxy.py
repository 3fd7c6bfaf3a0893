"""TCP proxies that can cut a connection path on purpose (refuse new connections and reset
the open ones) and heal it: worker → Temporal, worker → PostgreSQL.

They run on an event loop of their own, in a thread, so the harness's other work (the
workload, blocking database calls) never delays the traffic they carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_CHUNK = 65536


class Proxy:
    """Listens on 127.0.0.1:`port` and forwards every connection to `upstream`."""

    def __init__(self, name: str, port: int, upstream: tuple[str, int]) -> None:
        self.name = name
        self.port = port
        self.upstream = upstream
        self.cut_now = False
        self._server: asyncio.Server | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> int:
        """Stops listening (connecting is refused) and resets every open connection; returns
        how many were reset."""
        self.cut_now = True
        if self._server is not None:
            self._server.close()
            self._server = None
        reset = 0
        for pair in list(self._open):
            for writer in pair:
                _reset(writer)
            reset += 1
        self._open.clear()
        return reset

    async def heal(self) -> None:
        self.cut_now = False
        if self._server is None:
            await self.listen()

    async def close(self) -> None:
        await self.cut()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self.cut_now:
            _reset(client)
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(client)  # as the upstream refused us, so we refuse our client
            return
        pair = (client, upstream)
        self._open.add(pair)
        try:
            await asyncio.gather(
                _pipe(client_reader, upstream, pair),
                _pipe(upstream_reader, client, pair),
                return_exceptions=True,
            )
        finally:
            self._open.discard(pair)
            for writer in pair:
                writer.close()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        # One side broke: so does the other, as it would without us in between.
        for side in pair:
            _reset(side)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Closes with a TCP RST (linger 0), not a FIN: the peer sees the connection reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _finish_tasks() -> None:
    """Ends the connections' tasks, so that none is destroyed pending with the loop."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Proxies:
    """Every proxy of a stack, on one event loop in a thread of its own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="torture-proxies", daemon=True
        )
        self._thread.start()
        self.by_name: dict[str, Proxy] = {}

    async def add(self, name: str, port: int, upstream: tuple[str, int]) -> Proxy:
        proxy = Proxy(name, port, upstream)
        await self._on_loop(proxy.listen())
        self.by_name[name] = proxy
        return proxy

    async def cut(self, name: str) -> int:
        return await self._on_loop(self.by_name[name].cut())

    async def heal(self, name: str) -> None:
        await self._on_loop(self.by_name[name].heal())

    async def close(self) -> None:
        for proxy in self.by_name.values():
            await self._on_loop(proxy.close())
        await self._on_loop(_finish_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))
