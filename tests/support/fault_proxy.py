"""A small asyncio TCP proxy that puts faults between the service and a downstream.

It listens on a free loopback port and forwards every connection to its upstream, byte for
byte, until a test switches its mode (at any moment, for new and open connections alike):

- `pass`: forward both ways.
- `latency`: forward, each chunk of the answer `delay` seconds late (`per="chunk"`), or each
  new connection held `delay` seconds before it is connected upstream (`per="connection"`).
- `reset`: the next bytes the client sends are answered with a TCP RST (SO_LINGER 0).
- `black_hole`: accept and read, never forward, never answer. A connection once black-holed
  stays so (its request is lost), as one stuck behind a dead route does.

It counts what it did, so a test can compare the attempts a client made with what it is
configured to make: connections accepted, connections reset, connections black-holed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

CHUNK = 65536


class Mode(StrEnum):
    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    BLACK_HOLE = "black_hole"


@dataclass
class Counts:
    connections: int = 0  # accepted
    resets: int = 0  # connections answered with a RST
    black_holed: int = 0  # connections whose bytes were swallowed
    held_at: list[float] = field(default_factory=list)  # when each was (time.monotonic)


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = Mode.PASS
        self.delay = 0.0
        self.per: Literal["chunk", "connection"] = "chunk"
        self.counts = Counts()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and drop every connection, held ones included."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()  # the client side ends: so does its connection task
        await asyncio.gather(*self._connections, return_exceptions=True)

    # -- switching faults ----------------------------------------------------------------------

    def passing(self) -> None:
        self.mode = Mode.PASS

    def latency(self, delay: float, *, per: Literal["chunk", "connection"] = "chunk") -> None:
        self.mode, self.delay, self.per = Mode.LATENCY, delay, per

    def reset(self) -> None:
        self.mode = Mode.RESET

    def black_hole(self) -> None:
        self.mode = Mode.BLACK_HOLE

    # -- forwarding ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(writer)
        self.counts.connections += 1
        try:
            await _Connection(self, reader, writer).serve()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # either side went away: so does the connection
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._connections.discard(task)


class _Connection:
    """One client connection and, once something is to be forwarded, its upstream."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.held = False
        self.upstream: asyncio.StreamWriter | None = None

    async def serve(self) -> None:
        proxy = self.proxy
        if proxy.mode is Mode.LATENCY and proxy.per == "connection":
            await asyncio.sleep(proxy.delay)
        relay: asyncio.Task[None] | None = None
        try:
            while chunk := await self.reader.read(CHUNK):
                if self._black_holed():
                    continue
                if proxy.mode is Mode.RESET:
                    self._reset()
                    return
                if self.upstream is None:
                    up_reader, self.upstream = await asyncio.open_connection(*proxy.upstream)
                    relay = asyncio.create_task(self._relay(up_reader))
                self.upstream.write(chunk)
                await self.upstream.drain()
        finally:
            if relay is not None:
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
            if self.upstream is not None:
                self.upstream.transport.abort()

    async def _relay(self, up_reader: asyncio.StreamReader) -> None:
        proxy = self.proxy
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await up_reader.read(CHUNK):
                if self._black_holed():
                    continue
                if proxy.mode is Mode.RESET:
                    self._reset()
                    return
                if proxy.mode is Mode.LATENCY and proxy.per == "chunk":
                    await asyncio.sleep(proxy.delay)
                self.writer.write(chunk)
                await self.writer.drain()
            self.writer.close()  # upstream closed: so does the client's side

    def _black_holed(self) -> bool:
        if not self.held and self.proxy.mode is Mode.BLACK_HOLE:
            self.held = True
            self.proxy.counts.black_holed += 1
            self.proxy.counts.held_at.append(time.monotonic())
        return self.held

    def _reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        self.proxy.counts.resets += 1
