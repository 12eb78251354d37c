"""A TCP proxy between clients and a Redis, in this process, that injects network faults:
a lost reply (the command ran, its reply never arrives), dropped connections, refused
connections and a black hole.

It counts RESP values in both directions (requests: RESP arrays or inline commands; replies:
any RESP2/RESP3 value), so "the reply to the n-th request" is exact for request/reply
traffic, pipelines included (not for pub/sub pushes, and meaningless through TLS).

Two threads per connection (one per direction) and one accepting thread; close() ends
them all and closes every socket.
"""

import selectors
import socket
import threading
from typing import List, Optional, Set

__all__ = ["FaultProxy", "RespCounter"]

_CHUNK = 65536


class RespCounter:
    """Finds the ends of complete top-level RESP values in a byte stream fed in chunks
    (resumable: a value may span chunks; bulk payloads are skipped, not buffered)."""

    def __init__(self) -> None:
        self._line = bytearray()  # a header line not complete yet
        self._skip = 0  # bulk payload bytes (with its CRLF) still to pass
        self._stack: List[int] = []  # elements still missing in each open aggregate
        self.count = 0  # complete top-level values so far

    def feed(self, data: bytes) -> List[int]:
        """Offsets in `data` just after each top-level value that completes in it."""
        ends: List[int] = []
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if not self._skip:
                    self._done(ends, i)
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self._line += data[i:]
                break
            if self._line:
                self._line += data[i:j + 1]
                line = bytes(self._line)
                self._line.clear()
            else:
                line = data[i:j + 1]
            i = j + 1
            self._header(line.rstrip(b"\r\n"), ends, i)
        return ends

    def _header(self, line: bytes, ends: List[int], i: int) -> None:
        kind = line[:1]
        if kind in (b"$", b"=", b"!"):
            size = int(line[1:])
            if size < 0:
                self._done(ends, i)
            else:
                self._skip = size + 2
        elif kind in (b"*", b"~", b">", b"%", b"|"):
            size = int(line[1:])
            if kind == b"%":
                size *= 2
            elif kind == b"|":  # attributes: key/value pairs, then the value they describe
                size = size * 2 + 1
            if size <= 0:
                self._done(ends, i)
            else:
                self._stack.append(size)
        elif kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
            self._done(ends, i)
        elif line and not self._stack:  # an inline command ("PING\r\n")
            self._done(ends, i)

    def _done(self, ends: List[int], i: int) -> None:
        stack = self._stack
        while stack:
            stack[-1] -= 1
            if stack[-1]:
                return
            stack.pop()
        self.count += 1
        ends.append(i)


class _Link:
    """One proxied connection: the client's socket, the upstream one, and its counts."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.requests = RespCounter()
        self.replies = RespCounter()
        self.cut_at: Optional[int] = None  # number of the reply not to deliver
        self.closed = False
        self.pumps_left = 2

    def shutdown(self) -> None:
        """Wake both pumps (they see EOF or an error); the last one closes the sockets."""
        self.closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultProxy:
    """Listens on a free port of 127.0.0.1 (`port`, `url`) and forwards every connection
    to `target_host`:`target_port`, unless told to fail.

    Counters: `accepted` (connections, refused ones too), `refused`, `requests`
    (forwarded requests), `replies` (delivered replies), `cuts` (connections cut by
    cut_next_reply/cut_after_requests), `open_connections`.
    """

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 6379) -> None:
        self.target = (target_host, target_port)
        self.accepted = self.refused = self.requests = self.replies = self.cuts = 0
        self._lock = threading.Condition()
        self._links: Set[_Link] = set()
        self._threads: List[threading.Thread] = []
        self._cut_next = False
        self._cut_request: Optional[int] = None  # global number of the request whose reply is cut
        self._refuse = False
        self._blackhole = False
        self._closed = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: connect here to go through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def target_url(self) -> str:
        """``redis://host:port/0`` of the Redis behind the proxy (bypasses it)."""
        return f"redis://{self.target[0]}:{self.target[1]}/0"

    @property
    def open_connections(self) -> int:
        """Connections being forwarded right now."""
        with self._lock:
            return len(self._links)

    # -- controls --------------------------------------------------------------------

    def cut_next_reply(self) -> None:
        """The next time Redis sends reply bytes on any connection, close that connection
        (both sides) instead of delivering them: the command ran, its reply is lost."""
        with self._lock:
            self._cut_next = True

    def cut_after_requests(self, n: int) -> None:
        """Count the requests forwarded from now on (pipelined ones one by one); when the
        reply to the `n`-th would be delivered, deliver the replies before it and close its
        connection instead (that request and any sent after it on the connection ran)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._cut_request = self.requests + n

    def drop_connections(self) -> None:
        """Close every connection now, both sides (new ones are still accepted)."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.shutdown()
        with self._lock:
            self._lock.notify_all()

    def refuse(self, on: bool = True) -> None:
        """While on, accept new connections and close them at once (the connect succeeds,
        the first read or write fails)."""
        with self._lock:
            self._refuse = on

    def blackhole(self, on: bool = True) -> None:
        """While on, forward nothing in either direction on any connection (a hang: the
        bytes wait, as on a partitioned network, and flow again when it is turned off)."""
        with self._lock:
            self._blackhole = on
            self._lock.notify_all()

    def close(self) -> None:
        """Stop accepting, close every connection and wait for every thread to end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._acceptor.join(10)
        self.drop_connections()
        for thread in list(self._threads):
            thread.join(10)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        alive = [t.name for t in self._threads if t.is_alive()] + ([self._acceptor.name] if self._acceptor.is_alive() else [])
        if alive:
            raise RuntimeError(f"fault proxy threads did not end: {alive}")

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _events in selector.select():
                    if key.fileobj is self._wake_r or self._closed:
                        return
                    try:
                        client, _addr = self._listener.accept()
                    except OSError:
                        continue
                    self._open(client)

    def _open(self, client: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            refuse = self._refuse
            if refuse:
                self.refused += 1
        if refuse:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream)
        pumps = [
            threading.Thread(target=self._pump_requests, args=(link,), name=f"fault-proxy-{self.port}-c2s", daemon=True),
            threading.Thread(target=self._pump_replies, args=(link,), name=f"fault-proxy-{self.port}-s2c", daemon=True),
        ]
        with self._lock:
            self._links.add(link)
            self._threads[:] = [t for t in self._threads if t.is_alive()] + pumps
        for pump in pumps:
            pump.start()

    def _wait_open(self, link: _Link) -> bool:
        """Wait out a black hole; False if the link closed meanwhile. Holds no lock after."""
        with self._lock:
            while self._blackhole and not link.closed:
                self._lock.wait()
            return not link.closed

    def _pump_requests(self, link: _Link) -> None:
        try:
            while True:
                data = link.client.recv(_CHUNK)
                if not data or not self._wait_open(link):
                    break
                with self._lock:
                    before = link.requests.count
                    for number, _end in enumerate(link.requests.feed(data), before + 1):
                        self.requests += 1
                        if self.requests == self._cut_request:
                            link.cut_at = number
                            self._cut_request = None
                link.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._pump_done(link)

    def _pump_replies(self, link: _Link) -> None:
        try:
            while True:
                data = link.upstream.recv(_CHUNK)
                if not data or not self._wait_open(link):
                    break
                with self._lock:
                    cut = self._cut_position(link, data)
                if cut is not None:
                    if cut:
                        link.client.sendall(data[:cut])
                    break
                link.client.sendall(data)
        except OSError:
            pass
        finally:
            self._pump_done(link)

    def _cut_position(self, link: _Link, data: bytes) -> Optional[int]:
        """Where to cut `data` (bytes before it are delivered), None to deliver it all.
        Called with the lock held."""
        if self._cut_next:
            self._cut_next = False
            self.cuts += 1
            return 0
        before = link.replies.count
        ends = link.replies.feed(data)
        cut_at = link.cut_at
        if cut_at is not None and cut_at > before:
            # The reply to cut starts where reply cut_at - 1 ends.
            wanted = cut_at - 1 - before  # replies to deliver first
            if wanted <= len(ends):
                position = ends[wanted - 1] if wanted else 0
                if position < len(data):
                    self.cuts += 1
                    self.replies += wanted
                    return position
        self.replies += len(ends)
        return None

    def _pump_done(self, link: _Link) -> None:
        link.shutdown()
        with self._lock:
            link.pumps_left -= 1
            last = link.pumps_left == 0
            if last:
                self._links.discard(link)
            self._lock.notify_all()
        if last:
            link.client.close()
            link.upstream.close()
