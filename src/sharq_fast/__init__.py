"""sharq_fast: a fast, SharQ-compatible, rate-limited queue client on Redis."""

from ._core import USE_EXTENSIONS
from .client import BatchError, Client
from .exceptions import BadArgumentException, ConfigError, SharqException
from .sharq import SharQ
from .types import (
    EnqueueResult,
    GlobalMetrics,
    Job,
    JobRequest,
    QueueMetrics,
    QueueTypeMetrics,
    RequeueResult,
    UndecodablePayload,
)

__version__ = "0.1.0"

__all__ = [
    "USE_EXTENSIONS",
    "BadArgumentException",
    "BatchError",
    "Client",
    "ConfigError",
    "EnqueueResult",
    "GlobalMetrics",
    "Job",
    "JobRequest",
    "QueueMetrics",
    "QueueTypeMetrics",
    "RequeueResult",
    "SharQ",
    "SharqException",
    "UndecodablePayload",
    "__version__",
]
