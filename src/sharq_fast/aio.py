"""``AsyncClient``: the SharQ operations for asyncio, the same as Client's.

Every public method of ``_api.Operations`` becomes a coroutine function here; the
operation behind it is the very one Client runs, driven by the asyncio transport, whose
auto-pipelining writes the calls that many tasks make in one loop turn together.
"""

import functools
from typing import Any, Callable

from ._api import OPERATIONS, Operations
from ._connect import aclose_owned
from .requeuer import AsyncRequeuer


def _coroutine(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: "AsyncClient", *args: Any, **kwargs: Any) -> Any:
        return await method(self, *args, **kwargs)

    return call


def _coroutine_methods(cls: type) -> type:
    for name in OPERATIONS:
        setattr(cls, name, _coroutine(getattr(Operations, name)))
    return cls


@_coroutine_methods
class AsyncClient(Operations):
    """A SharQ client for asyncio: ``AsyncClient("redis://localhost:6379/0")`` (or a
    ``redis+sentinel://`` URL), ``AsyncClient(redis.asyncio.Redis(...))`` (or a
    ``redis.asyncio.sentinel.Sentinel(...).master_for(...)`` client) or
    ``AsyncClient.from_config("sharq.conf")``;
    ``async with`` it, or ``await close()``. The methods and settings are Client's, as
    coroutines (see Client); ``enqueue_many`` also takes async iterables. Any number of
    tasks of one event loop may share it; ``requeuer=True`` (or start_requeuer) needs a
    running event loop."""

    _ASYNCIO = True
    _REQUEUER = AsyncRequeuer

    async def stop_requeuer(self) -> None:
        """Stop the background requeuer, if running, and release its lock."""
        if self._requeuer is not None:
            requeuer, self._requeuer = self._requeuer, None
            await requeuer.stop()

    async def close(self) -> None:
        """Stop the requeuer, refuse new calls, close the connections (and the Redis
        client if this client created it)."""
        await self.stop_requeuer()
        await self._transport.close()
        if self._owns_redis:
            await aclose_owned(self.redis)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
