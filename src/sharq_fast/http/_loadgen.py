"""A lean HTTP/1.1 load generator for ``sharq-fast bench-http``: one keep-alive
connection per simulated client, requests written by hand, answers read by
Content-Length. Generic clients (httpx, aiohttp) spend 0.5-1 ms of CPU per request, which
on a small machine would measure the client instead of the server."""

import asyncio
from typing import Dict, Optional, Tuple

import msgspec

_decode = msgspec.json.Decoder().decode


class HTTPConnection:
    """One keep-alive connection to host:port; ``request`` is not reentrant."""

    def __init__(self, host: str, port: int, headers: Optional[Dict[str, str]] = None) -> None:
        self.host = host
        self.port = port
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head_tail = f"Host: {host}:{port}\r\n{extra}".encode()
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self.requests = 0

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: Optional[bytes] = None) -> Tuple[int, bytes]:
        """Send one request; (status, body). Reconnects once if the server closed the
        connection while it was idle."""
        for attempt in (0, 1):
            if self._writer is None:
                await self._connect()
            try:
                return await self._exchange(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: Optional[bytes]) -> Tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        head = b"%s %s HTTP/1.1\r\n%s" % (method.encode(), path.encode(), self._head_tail)
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            self._writer.write(head + body)
        else:
            self._writer.write(head + b"Content-Length: 0\r\n\r\n")
        header = await self._reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        close = False
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ConnectionError("chunked answers are not expected from these servers")
        data = await self._reader.readexactly(length) if length else b""
        self.requests += 1
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self._reader = self._writer = None


def json_of(data: bytes) -> object:
    """The JSON of an answer body."""
    return _decode(data)
