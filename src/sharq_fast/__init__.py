"""sharq_fast: a fast, SharQ-compatible, rate-limited queue client on Redis."""

from ._core import USE_EXTENSIONS
from .aio import AsyncClient
from .client import Client
from .consumer import AsyncConsumer, Consumer, ConsumerStats
from .exceptions import (
    BadArgumentException,
    BatchError,
    ClientClosedError,
    ConfigError,
    OutcomeUnknownError,
    ReplicationError,
    SharqException,
)
from .sharq import SharQ
from .types import (
    EnqueueResult,
    FailOutcome,
    GlobalMetrics,
    Job,
    JobRequest,
    QueueMetrics,
    QueueTypeMetrics,
    RequeueResult,
    UndecodablePayload,
)

__version__ = "0.1.0"

_LAZY = {"ProxyClient", "AsyncProxyClient"}


def __getattr__(name: str):  # PEP 562: the proxy clients import httpx only when used
    if name in _LAZY:
        from .http import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module 'sharq_fast' has no attribute {name!r}")


__all__ = [
    "USE_EXTENSIONS",
    "AsyncClient",
    "AsyncConsumer",
    "AsyncProxyClient",
    "BadArgumentException",
    "BatchError",
    "Client",
    "ClientClosedError",
    "ConfigError",
    "Consumer",
    "ConsumerStats",
    "OutcomeUnknownError",
    "ReplicationError",
    "EnqueueResult",
    "FailOutcome",
    "GlobalMetrics",
    "Job",
    "JobRequest",
    "ProxyClient",
    "QueueMetrics",
    "QueueTypeMetrics",
    "RequeueResult",
    "SharQ",
    "SharqException",
    "UndecodablePayload",
    "__version__",
]
