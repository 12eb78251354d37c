"""The settings of a client, checked once, shared by Client and AsyncClient and handed to
every operation."""

import time
from typing import Any, Callable, Dict, Optional

from . import _constants as C
from . import _core
from ._rounds import ReplyTokens
from .exceptions import BadArgumentException
from .scripts import Script, load_scripts

Clock = Callable[[], int]


def epoch_ms() -> int:
    """The current Unix time in milliseconds (SharQ's clock)."""
    return time.time_ns() // 1_000_000


def positive_ms(value: Any, name: str) -> int:
    """`value` if it is an int of ms from 1 to MAX_INTEGER, else BadArgumentException."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadArgumentException(f"`{name}` must be a positive int of milliseconds.", field=name)
    if value > C.MAX_INTEGER:
        raise BadArgumentException(f"`{name}` {C.TOO_LARGE}", field=name)
    return value


def seconds(value: Any, name: str, allow_none: bool = False) -> Optional[float]:
    """`value` if it is a number of seconds >= 0 (or None when allowed), else raise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise BadArgumentException(f"`{name}` must be a finite number of seconds >= 0.", field=name)
    return float(value)


def replicas_arg(value: Any) -> int:
    """`value` if it is a number of replicas (an int from 0 to MAX_REPLICAS), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= C.MAX_REPLICAS:
        raise BadArgumentException(f"`replicas` must be an int from 0 to {C.MAX_REPLICAS}.", field="replicas")
    return value


class Settings:
    """What operations need to know of their client: key prefix, timings, clock, scripts,
    reply-cache tokens, and the replicas a write must reach (WAIT)."""

    def __init__(
        self,
        *,
        key_prefix: str,
        job_expire_interval: int,
        job_requeue_interval: int,
        default_job_requeue_limit: int,
        clock: Optional[Clock],
        wait_poll_interval: float,
        retry_for: float,
        replicas: int = C.DEFAULT_REPLICAS,
        replica_timeout: float = C.DEFAULT_REPLICA_TIMEOUT,
    ) -> None:
        if not isinstance(key_prefix, str) or not key_prefix:
            raise BadArgumentException("`key_prefix` must be a non-empty str.", field="key_prefix")
        self.key_prefix = key_prefix
        self.job_expire_interval = positive_ms(job_expire_interval, "job_expire_interval")
        self.job_requeue_interval = positive_ms(job_requeue_interval, "job_requeue_interval")
        try:
            self.default_job_requeue_limit = _core.core.check_requeue_limit(default_job_requeue_limit)
        except BadArgumentException as exc:  # named as the setting, not as enqueue's argument
            raise BadArgumentException(
                f"`default_job_requeue_limit` {exc.message.split('` ', 1)[1]}", field="default_job_requeue_limit"
            ) from None
        if clock is not None and not callable(clock):
            raise BadArgumentException("`clock` must be a function returning ms since the epoch.", field="clock")
        self.clock: Clock = clock or epoch_ms
        poll = seconds(wait_poll_interval, "wait_poll_interval")
        if not poll:
            raise BadArgumentException("`wait_poll_interval` must be > 0 seconds.", field="wait_poll_interval")
        self.wait_poll_interval = poll
        self.retry_for = seconds(retry_for, "retry_for")
        self.replicas = replicas_arg(replicas)
        timeout = seconds(replica_timeout, "replica_timeout")
        if not timeout:
            raise BadArgumentException("`replica_timeout` must be > 0 seconds (WAIT 0 would wait forever).",
                                       field="replica_timeout")
        self.replica_timeout = timeout
        self.scripts: Dict[str, Script] = load_scripts()
        self.sha = {name: script.sha for name, script in self.scripts.items()}
        self.tokens = ReplyTokens(key_prefix)
        #: The operations of the client's data layout, and the cluster layout's state (set
        #: by ``_layout.transport_for``).
        self.ops: Any = None
        self.cluster: Any = None

    def as_dict(self) -> Dict[str, Any]:
        """The constructor arguments that make an equal Settings."""
        return {
            "key_prefix": self.key_prefix,
            "job_expire_interval": self.job_expire_interval,
            "job_requeue_interval": self.job_requeue_interval,
            "default_job_requeue_limit": self.default_job_requeue_limit,
            "wait_poll_interval": self.wait_poll_interval,
            "retry_for": self.retry_for,
            "replicas": self.replicas,
            "replica_timeout": self.replica_timeout,
        }
