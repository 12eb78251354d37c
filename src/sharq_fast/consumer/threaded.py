"""Consumer: the engine driven by threads (a fetcher, a keeper, the handler's workers).

The fetcher thread dequeues the next batch while the workers handle the current one, and
the keeper thread sends completions with finish_many while the fetcher waits on its
dequeue: fetching, handling and finishing overlap. With concurrency 1 the handler runs
in one worker thread (not run()'s own: run() returns at the end of the grace period,
or at once on stop(now=True), even if a handler never does); above, in a pool of threads.
"""

import threading
from typing import Any, Callable, Optional

from ..client import Client
from ..types import Job
from .common import ConsumerBase, QueueTypes
from .engine import CALL, FLUSH, HALT, RUNNING, SPACE, STOP, Engine, Loop, Steps


class Consumer(ConsumerBase):
    """Runs `handler(job)` for each job of `queue_type` (a queue type, a list of them, or
    a mapping of queue types to weights), `concurrency` at a time; a handler that returns
    finishes its job, one that raises fails it (retried, with `retry_backoff` seconds,
    until its requeue limit; then `dead_letter` / `on_discard`). See docs/consumer.md.

    ``run()`` blocks until ``stop()`` or SIGINT/SIGTERM (when in the main thread; a second
    signal stops at once); ``start()`` runs it in a background thread, ``join()`` waits."""

    def __init__(self, client: Client, queue_type: QueueTypes, handler: Callable[[Job], Any], *,
                 concurrency: int = 1, **options: Any) -> None:
        super().__init__(client, queue_type, handler, concurrency=concurrency, **options)
        self._events = {name: threading.Event() for name in (SPACE, FLUSH, STOP, HALT)}
        self._jobs = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self.engine.wake = self._wake

    def _wake(self, name: str) -> None:
        if name == Engine.JOBS:
            with self._jobs:
                self._jobs.notify_all()
        else:
            self._events[name].set()

    def run(self) -> None:
        """Consume until stopped; returns after the drain (see stop())."""
        self._begin()
        previous = self._install_signals()
        loops = []
        try:
            self._start_requeuer()
            loops = [self._spawn(self._drive, self.engine.fetcher(), "fetcher"),
                     self._spawn(self._drive, self.engine.keeper(), "keeper")]
            for i in range(self.concurrency):
                self._spawn(self._work, None, f"worker-{i}")
            # The workers are not waited for: a handler still running after the grace
            # period is left to its lease (a thread cannot be cancelled).
            for thread in reversed(loops):
                while thread.is_alive():  # short joins: signals are handled meanwhile
                    thread.join(0.2)
        except BaseException:
            self.engine.stop(now=True)
            raise
        finally:
            if self._started_requeuer:
                self.client.stop_requeuer()
            self._restore_signals(previous)
        if self.error is not None:
            raise self.error

    def _spawn(self, target: Callable[[Any], None], arg: Any, name: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=(arg,) if arg is not None else (), daemon=True,
                                  name=f"sharq-consumer-{name}")
        thread.start()
        return thread

    def start(self) -> None:
        """run() in a background thread (no signal handling there)."""
        self._thread = threading.Thread(target=self._run_logged, name="sharq-consumer", daemon=True)
        self._thread.start()

    def _run_logged(self) -> None:
        try:
            self.run()
        except BaseException:
            self.log.exception("the consumer stopped on an error")

    def stop(self, now: bool = False) -> None:
        """Stop fetching, let running jobs end (up to grace_period), release the fetched
        jobs not started, send the completions, return from run(). now=True: at once
        (the jobs held come back when their leases expire)."""
        self.engine.stop(now)

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the thread of start() to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        engine, handler, take, jobs = self.engine, self.handler, self.engine.take, self._jobs
        decode = engine.decode if engine.payload_type is not None else None
        while True:
            job = take()
            if job is None:
                if engine.phase != RUNNING:
                    return
                with jobs:
                    if not engine.buffer and engine.phase == RUNNING:
                        jobs.wait(0.5)
                continue
            try:
                if decode is not None:
                    decode(job)
                handler(job)
            except BaseException as exc:  # SystemExit too: a failure; the worker goes on
                engine.failed(job, exc)
            else:
                engine.done(job)

    def _drive(self, loop: Loop) -> None:
        """Carry out a loop's actions until it ends; a crash is logged and stops the consumer."""
        client, events, steps = self.client, self._events, Steps(loop)
        try:
            while True:
                action = steps.next()
                if action is None:
                    return
                if action[0] == CALL:
                    try:
                        steps.reply = getattr(client, action[1])(*action[2], **action[3])
                    except Exception as exc:
                        steps.error = exc
                    continue
                event = events[action[1]]
                event.wait(action[2])
                if action[1] in (SPACE, FLUSH):
                    event.clear()
        except BaseException as exc:
            self._crashed(exc)
