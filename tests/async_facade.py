"""Runs AsyncClient behind Client's sync interface, so that every behaviour test of the
client runs on both transports (conftest's `transport` fixture) without being copied.

The AsyncClient lives in an event loop of its own thread; each coroutine method called here
runs there and is waited for. Everything else (settings, properties) is read through.
"""

import asyncio
import inspect
import threading
from typing import Any, Callable, Coroutine

from sharq_fast import AsyncClient


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run `coroutine` in the loop and return its result (or raise its error)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class SyncFacade:
    """An AsyncClient with Client's sync methods: ``facade.enqueue(...)`` runs
    ``await client.enqueue(...)`` in the loop thread."""

    def __init__(self, loop: LoopThread, factory: Callable[[], AsyncClient]) -> None:
        async def make() -> AsyncClient:
            return factory()

        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_client", loop.run(make()))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if callable(value) and not isinstance(value, type):
            # Called in the loop's thread (some need a running loop); a coroutine is awaited.
            return lambda *args, **kwargs: self._loop.run(_call(value, *args, **kwargs))
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)

    def __enter__(self) -> "SyncFacade":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


async def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = function(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
