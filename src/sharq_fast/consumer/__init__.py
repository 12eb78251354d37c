"""Consumer loops: ``Consumer`` (threads) and ``AsyncConsumer`` (asyncio) run a handler
for each job of one or more queue types, fetching with the wait-aware ``dequeue_many``,
finishing with batched ``finish_many``, keeping leases with ``extend_many``, failing with
``fail_many``, and draining on stop or SIGTERM. Both drive one engine (``engine``), which
decides everything and does no I/O. See docs/consumer.md."""

from .aio import AsyncConsumer
from .engine import ConsumerStats, JobTimeoutError, PayloadTypeError
from .threaded import Consumer

__all__ = ["AsyncConsumer", "Consumer", "ConsumerStats", "JobTimeoutError", "PayloadTypeError"]
