"""AsyncConsumer: the engine driven by asyncio tasks (a fetcher, a keeper, `concurrency`
workers) on one event loop and one AsyncClient, whose auto-pipelining sends the
fetcher's dequeue and the keeper's finish_many together when they meet in a loop turn."""

import asyncio
import signal
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional

from ..aio import AsyncClient
from ..types import Job
from .common import SIGNALS, ConsumerBase, QueueTypes
from .engine import CALL, FLUSH, HALT, RUNNING, SPACE, STOP, Engine, JobTimeoutError, Loop, Steps


class AsyncConsumer(ConsumerBase):
    """Runs ``await handler(job)`` for each job of `queue_type` (a queue type, a list, or
    a mapping of queue types to weights) as up to `concurrency` tasks; the keywords and
    semantics are Consumer's (see docs/consumer.md). ``await run()`` until ``stop()``
    (a plain method, safe from any thread) or SIGINT/SIGTERM (when the loop runs in the
    main thread; a second signal stops at once). `job_timeout` cancels the handler."""

    _REAP_TIMEOUTS = False  # asyncio.wait_for cancels a handler that runs too long

    def __init__(self, client: AsyncClient, queue_type: QueueTypes, handler: Callable[[Job], Awaitable[Any]], *,
                 concurrency: int = 100, **options: Any) -> None:
        super().__init__(client, queue_type, handler, concurrency=concurrency, **options)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._events: Dict[str, asyncio.Event] = {}
        self.engine.wake = self._wake

    def _wake(self, name: str) -> None:
        event = self._events.get(name)
        if event is not None:
            event.set()

    async def run(self) -> None:
        """Consume until stopped; returns after the drain (see stop())."""
        self._begin()
        self._loop = loop = asyncio.get_running_loop()
        self._events = {name: asyncio.Event() for name in (SPACE, FLUSH, STOP, HALT, Engine.JOBS)}
        if self.engine.phase != RUNNING:  # stopped before it ran
            self._wake(STOP)
        signals = self._install_loop_signals(loop)
        workers: List["asyncio.Task[None]"] = []
        fetcher = keeper = None
        try:
            self._start_requeuer()
            fetcher = asyncio.ensure_future(self._drive(self.engine.fetcher()))
            keeper = asyncio.ensure_future(self._drive(self.engine.keeper()))
            workers = [asyncio.ensure_future(self._work()) for _ in range(self.concurrency)]
            await asyncio.shield(keeper)
        finally:
            self.engine.stop(now=True) if keeper is None or not keeper.done() else None
            # Handlers still running after the grace period (or at a stop now) are
            # cancelled: their jobs come back when their leases expire.
            for task in workers + [t for t in (fetcher, keeper) if t is not None]:
                task.cancel()
            await asyncio.gather(*workers, *(t for t in (fetcher, keeper) if t is not None), return_exceptions=True)
            if self._started_requeuer:
                await self.client.stop_requeuer()
            for signum, previous in signals.items():
                loop.remove_signal_handler(signum)
                if previous is not None:  # the handler before run() (asyncio.run's SIGINT one)
                    signal.signal(signum, previous)
        if self.error is not None:
            raise self.error

    def _install_loop_signals(self, loop: asyncio.AbstractEventLoop) -> Dict[int, Any]:
        """Handle SIGINT/SIGTERM in the loop while it runs in the main thread; the handlers
        they had."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        installed = {}
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, self._on_loop_signal, signum)
            except (NotImplementedError, RuntimeError):  # not the main thread's loop, or Windows
                continue
            installed[signum] = previous
        return installed

    def _on_loop_signal(self, signum: int) -> None:
        self._signals_seen += 1
        self.log.warning("signal %d: %s", signum, "stopping now" if self._signals_seen > 1 else "draining (again to stop now)")
        self.engine.stop(self._signals_seen > 1)

    def stop(self, now: bool = False) -> None:
        """Stop fetching, let running jobs end (up to grace_period), release the fetched
        jobs not started, send the completions, return from run(). now=True: at once.
        Safe from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _in_loop(loop):
            loop.call_soon_threadsafe(self.engine.stop, now)
        else:
            self.engine.stop(now)

    async def _work(self) -> None:
        engine, handler, take = self.engine, self.handler, self.engine.take
        jobs = self._events[Engine.JOBS]
        decode = engine.decode if engine.payload_type is not None else None
        timeout = engine.job_timeout
        while True:
            job = take()
            if job is None:
                if engine.phase != RUNNING:
                    return
                jobs.clear()
                await jobs.wait()
                continue
            try:
                if decode is not None:
                    decode(job)
                if timeout is None:
                    await handler(job)
                else:
                    try:
                        await asyncio.wait_for(handler(job), timeout)
                    except asyncio.TimeoutError:
                        raise JobTimeoutError(f"the handler ran longer than job_timeout ({timeout}s)") from None
            except asyncio.CancelledError as exc:
                cancelling = getattr(asyncio.current_task(), "cancelling", None)  # Python >= 3.11
                if engine.phase != RUNNING if cancelling is None else cancelling() > 0:
                    raise  # this worker is cancelled (stop now, grace period over)
                engine.failed(job, exc)  # the handler's own cancellation: a failure, the worker goes on
            except Exception as exc:
                engine.failed(job, exc)
            else:
                engine.done(job)

    async def _drive(self, loop: Loop) -> None:
        """Carry out a loop's actions until it ends; a crash is logged and stops the consumer."""
        client, events, steps = self.client, self._events, Steps(loop)
        try:
            while True:
                action = steps.next()
                if action is None:
                    return
                if action[0] == CALL:
                    try:
                        steps.reply = await getattr(client, action[1])(*action[2], **action[3])
                    except Exception as exc:
                        steps.error = exc
                    continue
                event = events[action[1]]
                if not event.is_set():
                    try:
                        await asyncio.wait_for(event.wait(), action[2])
                    except asyncio.TimeoutError:
                        pass
                if action[1] in (SPACE, FLUSH):
                    event.clear()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._crashed(exc)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
