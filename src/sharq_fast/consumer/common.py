"""What both drivers share: the constructor's keywords, the engine's creation, stats and
the requeuer's start and stop, and the signal handling rule (first signal: drain; second:
stop now)."""

import logging
import signal
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from ..types import Job
from .engine import Engine, ConsumerStats

#: The signals a consumer handles while run() runs in the main thread.
SIGNALS = (signal.SIGINT, signal.SIGTERM)

QueueTypes = Union[str, Sequence[str], Mapping[str, int]]


class ConsumerBase:
    """The consumer's options, engine and stats (see Consumer and AsyncConsumer)."""

    _REAP_TIMEOUTS = True  # the thread driver cannot cancel a handler: the engine times it out

    def __init__(
        self,
        client: Any,
        queue_type: QueueTypes,
        handler: Callable[[Job], Any],
        *,
        concurrency: int,
        finish_delay: float = 0.005,
        finish_batch: int = 1000,
        grace_period: float = 30.0,
        job_timeout: Optional[float] = None,
        retry_backoff: Union[float, Callable[[Job], float]] = 0.0,
        dead_letter: Optional[str] = None,
        on_discard: Optional[Callable[[Job], None]] = None,
        payload_type: Any = None,
        requeuer: bool = True,
        wait_timeout: float = 1.0,
        handle_signals: bool = True,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        if not callable(handler):
            from ..exceptions import BadArgumentException

            raise BadArgumentException("`handler` must be a function taking a Job", field="handler")
        self.client = client
        self.handler = handler
        self.requeuer = requeuer
        self.handle_signals = handle_signals
        self.engine = Engine(
            client, queue_type, concurrency=concurrency, finish_delay=finish_delay, finish_batch=finish_batch,
            grace_period=grace_period, job_timeout=job_timeout, retry_backoff=retry_backoff,
            dead_letter=dead_letter, on_discard=on_discard, payload_type=payload_type,
            wait_timeout=wait_timeout, logger=logger, reap_timeouts=self._REAP_TIMEOUTS,
        )
        self.log = self.engine.log
        self._signals_seen = 0
        self._started_requeuer = False
        self._ran = False
        self.error: Optional[BaseException] = None

    @property
    def concurrency(self) -> int:
        """How many handlers run at once."""
        return self.engine.concurrency

    def stats(self) -> ConsumerStats:
        """The counts so far (a copy): processed, failed, retried, discarded, released,
        in_flight, lease_losses, last_turn."""
        return self.engine.current_stats()

    def _begin(self) -> None:
        if self._ran:
            raise RuntimeError("a consumer runs once: make a new one")
        self._ran = True

    def _start_requeuer(self) -> None:
        existing = getattr(self.client, "_requeuer", None)
        if not self.requeuer or (existing is not None and existing.is_alive()):
            return  # off, or the client runs one already (which is not ours to stop)
        self.client.start_requeuer(on_discard=self.engine.on_discard)
        self._started_requeuer = True

    def _on_signal(self, signum: int, _frame: Any = None) -> None:
        """First signal: drain; the next: stop now. Runs the stop in a thread of its own,
        so that a signal handler never takes a lock the interrupted code may hold."""
        self._signals_seen += 1
        now = self._signals_seen > 1
        self.log.warning("%s: %s", signal.Signals(signum).name, "stopping now" if now else "draining (again to stop now)")
        threading.Thread(target=self.stop, args=(now,), daemon=True).start()

    def _crashed(self, exc: BaseException) -> None:
        """A loop of the consumer failed (a bug, never Redis trouble): stop, and run()
        raises it once stopped."""
        self.error = exc
        self.log.error("consumer loop crashed: stopping now", exc_info=exc)
        self.engine.stop(now=True)

    def stop(self, now: bool = False) -> None:  # pragma: no cover - defined by each driver
        raise NotImplementedError

    def _install_signals(self) -> Dict[int, Any]:
        """Handle SIGINT/SIGTERM while running in the main thread; the previous handlers."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: Dict[int, Any]) -> None:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
