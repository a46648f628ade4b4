"""A small asyncio TCP proxy for network-fault tests.

    proxy = TcpProxy("127.0.0.1", 5672)
    port = await proxy.start()          # clients connect to 127.0.0.1:<port>
    await proxy.cut()                   # connection reset: every socket closed abruptly (RST)
    proxy.blackhole()                   # partition: sockets stay open, no byte moves either way
    proxy.heal()                        # the partition ends: held bytes flow, new connections work
    await proxy.stop()

A blackhole behaves like a real partition, not like a reset: bytes sent meanwhile are held (TCP
would retransmit them) and delivered on ``heal()``; an EOF or reset from one side is not passed
to the other until then; a new connection is accepted but not connected upstream until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

_CHUNK = 64 * 1024


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close a socket at once with an RST (SO_LINGER 0), discarding anything unsent."""
    if writer is None:
        return
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Link:
    """One client connection and its upstream connection."""

    __slots__ = ("client", "task", "upstream")

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[None] | None) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.upstream)

    def close(self) -> None:
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._links: set[_Link] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TcpProxy is not started")
        return self._port

    @property
    def connections(self) -> int:
        """Client connections currently held by the proxy."""
        return len(self._links)

    @property
    def blackholed(self) -> bool:
        return not self._open.is_set()

    async def start(self) -> int:
        """Listen on 127.0.0.1 on a free port; return that port."""
        if self._server is not None:
            return self.port
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def cut(self) -> None:
        """Reset every connection (both sides, abruptly). New connections are accepted."""
        links = list(self._links)
        for link in links:
            link.abort()
        tasks = [link.task for link in links if link.task is not None]
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for link in links:
            for writer in (link.client, link.upstream):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    def blackhole(self) -> None:
        """Stop forwarding in both directions, keeping every socket open (a partition)."""
        self._open.clear()

    def heal(self) -> None:
        """End the partition: forwarding resumes and waiting connections go upstream."""
        self._open.set()

    async def stop(self) -> None:
        """Stop listening and reset every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- internals ------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, asyncio.current_task())
        self._links.add(link)
        try:
            await self._open.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                _abort(writer)
                return
            link.upstream = up_writer
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(reader, up_writer, link))
                group.create_task(self._pump(up_reader, writer, link))
            link.close()
        except asyncio.CancelledError:
            # Cancelled by cut()/stop(). Python 3.11's start_server logs an error for a
            # connection handler that ends cancelled, so end normally instead.
            link.abort()
        finally:
            self._links.discard(link)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                await self._open.wait()
                data = await reader.read(_CHUNK)
                await self._open.wait()  # held while blackholed, delivered on heal()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if not writer.transport.is_closing() and writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            await self._open.wait()  # a reset crosses no partition either
            link.abort()
