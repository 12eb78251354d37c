"""The sync cluster transport: drives operations of the cluster layout (``_ops_cluster``)
over a ``redis.cluster.RedisCluster``.

redis-py's cluster client gives the topology (slot -> node, refreshed on MOVED and after
failures) and each node's connection pool; the commands themselves are written as the
core packed them, each node's commands of a round in one write, every node written before
any is read, so the nodes work in parallel (``_cluster_route`` decides where each command
goes and what to do with redirections and failures). redis-py's cluster pipeline is not
used: it refuses EVALSHA.
"""

import os
import threading
import time
from typing import Any, Dict, List, Optional

import redis
import redis.cluster
from redis.exceptions import ResponseError

from . import _ops
from ._cluster_route import Exchange, LoadScripts, Moved, NodeLost, Pause, Refresh, Router, route
from ._retry import Attempts, is_connection_error
from ._rounds import Collect, Draw, Op, Round, Send, T, Wait, Watch
from ._settings import Settings
from ._waker import Waker
from .exceptions import ClientClosedError


class SyncRouter(Router):
    """Slot -> node name from the cluster client's slot map; a redis.Redis per node."""

    def __init__(self, cluster: redis.cluster.RedisCluster) -> None:
        self.cluster = cluster
        self.manager = cluster.nodes_manager
        self._clients: Dict[str, redis.Redis] = {}
        self._idle: Dict[str, List[Any]] = {}
        self._pid = os.getpid()
        self._closed = False
        self._lock = threading.Lock()

    def node(self, slot: int) -> str:
        return str(self.manager.get_node_from_slot(slot).name)

    def masters(self) -> List[str]:
        return sorted(node.name for node in self.manager.get_nodes_by_server_type("primary"))

    def client(self, name: str) -> redis.Redis:
        """A redis.Redis on node `name` (its own pool; kept while the transport lives)."""
        client = self._clients.get(name)
        if client is None:
            with self._lock:
                client = self._clients.get(name)
                if client is None:
                    host, port = name.rsplit(":", 1)
                    client = redis.Redis(host=host, port=int(port), **self.manager.connection_kwargs)
                    self._clients[name] = client
        return client

    def acquire(self, name: str) -> Any:
        """A connection to node `name`: an idle one of this transport, else a new one from
        the node's pool (taking one from redis-py's pool costs a good part of a round trip;
        the idle stack only grows to the rounds that ran at the same moment)."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle, self._clients = os.getpid(), {}, {}
            idle = self._idle.get(name)
            if idle:
                return idle.pop()
        return self.client(name).connection_pool.get_connection()

    def release(self, name: str, conn: Any, reusable: bool) -> None:
        """Give a connection back: kept idle when its replies were all read."""
        if reusable:
            with self._lock:
                if not self._closed:
                    self._idle.setdefault(name, []).append(conn)
                    return
        pool = self.client(name).connection_pool
        if not reusable:
            conn.disconnect()
        pool.release(conn)

    def refresh(self) -> None:
        try:
            self.manager.initialize()
        except Exception:  # no node answers yet: the next attempt refreshes again
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
            self._idle = {}
        for client in clients:
            client.close()


class _Sent:
    """A round in progress: its routing generator, the exchange written, connections."""

    __slots__ = ("gen", "exchange", "conns", "results")

    def __init__(self, gen: Any) -> None:
        self.gen = gen
        self.exchange: Any = None
        self.conns: Dict[str, Any] = {}
        self.results: Dict[str, Any] = {}


class ClusterTransport:
    """Runs cluster-layout operations over a ``redis.cluster.RedisCluster``; thread-safe."""

    def __init__(self, cluster: redis.cluster.RedisCluster, settings: Settings) -> None:
        self.redis = cluster
        self.settings = settings
        self.router = SyncRouter(cluster)
        self._closed = False
        self._busy = 0
        self._lock = threading.Condition()
        self._waker: Optional[Waker] = None

    def run(self, op: Op[T]) -> T:
        """Run an operation to its end and return its result."""
        pending: List[_Sent] = []
        try:
            request = next(op)
            while True:
                try:
                    kind = type(request)
                    if kind is Round:
                        answer: Any = self._collect(self._send(request))
                    elif kind is Send:
                        answer = self._send(request.round)
                        pending.append(answer)
                    elif kind is Collect:
                        pending.remove(request.handle)
                        answer = self._collect(request.handle)
                    elif kind is Draw:
                        answer = _ops.draw(request.source, request.count)
                    elif kind is Watch:
                        answer = self._wake_counts().count(request.channel)
                    elif kind is Wait:
                        answer = self._wake_counts().wait(request.channel, request.seen, request.seconds)
                    else:
                        raise TypeError(f"unknown request {request!r}")
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(answer)
        except StopIteration as stop:
            return stop.value
        finally:
            for sent in pending:
                self._drop(sent)

    # -- rounds -------------------------------------------------------------------------

    def _send(self, round: Round) -> _Sent:
        """Start a round: route it and write its first exchange."""
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed: make a new one")
            self._busy += 1
        sent = _Sent(route(round, self.router, Attempts(self.settings.retry_for)))
        try:
            self._advance(sent, next(sent.gen))
        except BaseException:
            self._done(sent)
            raise
        return sent

    def _collect(self, sent: _Sent) -> List[Any]:
        """Read the replies of a started round, then go on until it is done."""
        try:
            while True:
                self._read(sent)
                try:
                    request = sent.gen.send(sent.results)
                except StopIteration as stop:
                    return stop.value
                self._advance(sent, request)
        finally:
            self._done(sent)

    def _advance(self, sent: _Sent, request: Any) -> None:
        """Carry out the routing's requests up to the next exchange, and write it."""
        while not isinstance(request, Exchange):
            if isinstance(request, Pause):
                time.sleep(request.seconds)
            elif isinstance(request, Refresh):
                self.router.refresh()
            elif isinstance(request, Moved):
                try:
                    self.router.manager.move_slot(request.error)
                except Exception:
                    self.router.refresh()
            elif isinstance(request, LoadScripts):
                self._load_scripts(request.node)
            request = sent.gen.send(None)
        sent.exchange = request
        sent.results = {}
        sent.conns = {}
        for node, commands in request.batches.items():
            try:
                conn = self.router.acquire(node)
                conn.connect()  # no-op when connected; a new socket after a failure
            except BaseException as exc:
                if not is_connection_error(exc):
                    raise
                sent.results[node] = NodeLost(exc, False)
                continue
            try:
                conn.send_packed_command((b"".join(commands),), check_health=False)
            except BaseException as exc:
                self.router.release(node, conn, reusable=False)
                if not is_connection_error(exc):
                    raise
                sent.results[node] = NodeLost(exc, True)
                continue
            sent.conns[node] = conn

    def _read(self, sent: _Sent) -> None:
        conns, sent.conns = sent.conns, {}
        error = None
        for node, conn in conns.items():
            try:
                sent.results[node] = _read_replies(conn, len(sent.exchange.batches[node]))
            except BaseException as exc:
                self.router.release(node, conn, reusable=False)
                if not is_connection_error(exc):
                    error = error or exc
                sent.results[node] = NodeLost(exc, True)
            else:
                self.router.release(node, conn, reusable=True)
        if error is not None:
            raise error

    def _drop(self, sent: _Sent) -> None:
        """A round whose replies will not be read: its connections can't be reused."""
        for node, conn in sent.conns.items():
            self.router.release(node, conn, reusable=False)
        sent.conns = {}
        self._done(sent)

    def _done(self, sent: _Sent) -> None:
        if sent.gen is None:
            return
        sent.gen = None
        with self._lock:
            self._busy -= 1
            self._lock.notify_all()

    def _load_scripts(self, node: str) -> None:
        client = self.router.client(node)
        for script in self.settings.scripts.values():
            try:
                client.script_load(script.source)
            except Exception:  # the resend meets the same node again, or another one
                pass

    def _wake_counts(self) -> Waker:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed: make a new one")
            if self._waker is None:
                # PUBLISH reaches every node of a cluster: listening on one is enough.
                node = self.router.client(self.router.masters()[0])
                self._waker = Waker(node, f"{self.settings.key_prefix}:.wake:*")
            return self._waker

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new rounds, wake waiting dequeues, wait up to `timeout` s for the rounds
        in flight, close the node connections this transport made."""
        with self._lock:
            self._closed = True
            waker, self._waker = self._waker, None
        if waker is not None:
            waker.close()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
        self.router.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed


def _read_replies(conn: Any, count: int) -> List[Any]:
    replies = []
    for _ in range(count):
        try:
            replies.append(conn.read_response(disable_decoding=True))
        except ResponseError as exc:
            replies.append(exc)
    return replies
