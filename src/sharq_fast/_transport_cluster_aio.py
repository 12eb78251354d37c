"""The asyncio cluster transport: drives operations of the cluster layout over a
``redis.asyncio.cluster.RedisCluster``.

Topology (slot -> node, MOVED patches, refreshes) is redis-py's; each node gets one
auto-pipelined connection (``_transport_aio._Pipeline``), so the calls that many tasks
make in one loop turn go to each node in one write, and a round's nodes are written
before any is awaited. Routing, redirections and failures: ``_cluster_route``.
"""

import asyncio
from typing import Any, Dict, List, Optional

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ._cluster_route import Exchange, LoadScripts, Moved, NodeLost, Pause, Refresh, Router, route
from ._retry import Attempts
from ._rounds import Collect, Draw, Op, Round, Send, T, Wait, Watch
from ._settings import Settings
from ._transport_aio import _draw, _Lost, _Pipeline
from ._waker import AsyncWaker
from .exceptions import ClientClosedError


class AsyncRouter(Router):
    """Slot -> node name from the cluster client's slot map; a pipeline per node."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._pools: Dict[str, Any] = {}
        self.pipelines: Dict[str, _Pipeline] = {}

    @property
    def manager(self) -> Any:
        return self.cluster.nodes_manager

    def node(self, slot: int) -> str:
        return str(self.manager.get_node_from_slot(slot).name)

    def masters(self) -> List[str]:
        return sorted(node.name for node in self.manager.get_nodes_by_server_type("primary"))

    def pool(self, name: str) -> Any:
        """A connection pool on node `name`, with the cluster client's connection settings."""
        pool = self._pools.get(name)
        if pool is None:
            host, port = name.rsplit(":", 1)
            known = self.manager.nodes_cache.get(name) or next(iter(self.manager.nodes_cache.values()))
            kwargs = {**known.connection_kwargs, "host": host, "port": int(port)}
            pool = self._pools[name] = redis.asyncio.ConnectionPool(connection_class=known.connection_class, **kwargs)
        return pool

    def pipeline(self, name: str) -> _Pipeline:
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            pipeline = self.pipelines[name] = _Pipeline(self.pool(name))
        return pipeline

    async def refresh(self) -> None:
        try:
            await self.manager.initialize()
        except Exception:  # no node answers yet: the next attempt refreshes again
            pass

    async def close(self) -> None:
        pipelines, self.pipelines = list(self.pipelines.values()), {}
        for pipeline in pipelines:
            await pipeline.close()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.disconnect()


class AsyncClusterTransport:
    """Runs cluster-layout operations on a ``redis.asyncio.cluster.RedisCluster``; many
    tasks of one event loop may share it."""

    def __init__(self, cluster: RedisCluster, settings: Settings) -> None:
        self.redis = cluster
        self.settings = settings
        self.router = AsyncRouter(cluster)
        self._ready = False
        self._waker: Optional[AsyncWaker] = None
        self._waker_lock: Optional[asyncio.Lock] = None
        self._closed = False

    async def run(self, op: Op[T]) -> T:
        """Run an operation to its end and return its result."""
        try:
            request = next(op)
            while True:
                try:
                    kind = type(request)
                    if kind is Round:
                        answer: Any = await self._collect(await self._send(request))
                    elif kind is Send:
                        answer = await self._send(request.round)
                    elif kind is Collect:
                        answer = await self._collect(request.handle)
                    elif kind is Draw:
                        answer = await _draw(request.source, request.count)
                    elif kind is Watch:
                        answer = (await self._wake_counts()).count(request.channel)
                    elif kind is Wait:
                        waker = await self._wake_counts()
                        answer = await waker.wait(request.channel, request.seen, request.seconds)
                    else:
                        raise TypeError(f"unknown request {request!r}")
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(answer)
        except StopIteration as stop:
            return stop.value

    async def _send(self, round: Round) -> Any:
        """Start a round: route it and submit its first exchange (not awaited)."""
        if self._closed:
            raise ClientClosedError("this client is closed: make a new one")
        if not self._ready:
            await self.redis.initialize()
            self._ready = True
        gen = route(round, self.router, Attempts(self.settings.retry_for))
        return gen, await self._advance(gen, next(gen))

    async def _collect(self, sent: Any) -> List[Any]:
        gen, (exchange, futures) = sent
        while True:
            results = {}
            for node, future in futures.items():
                try:
                    results[node] = await future
                except _Lost as lost:
                    results[node] = NodeLost(lost.cause, lost.reached)
            try:
                request = gen.send(results)
            except StopIteration as stop:
                return stop.value
            exchange, futures = await self._advance(gen, request)

    async def _advance(self, gen: Any, request: Any) -> Any:
        while not isinstance(request, Exchange):
            if isinstance(request, Pause):
                await asyncio.sleep(request.seconds)
            elif isinstance(request, Refresh):
                await self.router.refresh()
            elif isinstance(request, Moved):
                try:
                    await self.router.manager.move_slot(request.error)
                except Exception:
                    await self.router.refresh()
            elif isinstance(request, LoadScripts):
                await self._load_scripts(request.node)
            request = gen.send(None)
        if self._closed:
            raise ClientClosedError("this client is closed: make a new one")
        futures = {node: self.router.pipeline(node).submit(commands) for node, commands in request.batches.items()}
        return request, futures

    async def _load_scripts(self, node: str) -> None:
        from ._ops_queues import command

        commands = [command(b"SCRIPT", b"LOAD", script.source) for script in self.settings.scripts.values()]
        try:
            await self.router.pipeline(node).submit(commands)
        except _Lost:  # the resend meets the same node again, or another one
            pass

    async def _wake_counts(self) -> AsyncWaker:
        if self._closed:
            raise ClientClosedError("this client is closed: make a new one")
        if self._waker is None:
            if self._waker_lock is None:
                self._waker_lock = asyncio.Lock()
            async with self._waker_lock:
                if self._waker is None:
                    if not self._ready:
                        await self.redis.initialize()
                        self._ready = True
                    # PUBLISH reaches every node of a cluster: listening on one is enough.
                    node = redis.asyncio.Redis(connection_pool=self.router.pool(self.router.masters()[0]))
                    waker = AsyncWaker(node, f"{self.settings.key_prefix}:.wake:*")
                    await waker.start()
                    self._waker = waker
        return self._waker

    async def close(self) -> None:
        """Refuse new rounds, wake waiting dequeues, close the node connections."""
        self._closed = True
        if self._waker is not None:
            await self._waker.close()
            self._waker = None
        await self.router.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed
