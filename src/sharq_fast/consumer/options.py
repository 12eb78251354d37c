"""The checks of a consumer's keyword arguments: a bad one raises BadArgumentException
naming it, before anything runs."""

import math
from typing import Any, Iterable

from .. import _constants as C
from .. import _core
from ..exceptions import BadArgumentException


def check_options(
    concurrency: Any, finish_delay: Any, finish_batch: Any, grace_period: Any, job_timeout: Any,
    retry_backoff: Any, dead_letter: Any, on_discard: Any, wait_timeout: Any, queue_types: Iterable[str] = (),
) -> None:
    """Raise BadArgumentException for the first keyword that is not valid."""

    def number(value: Any, name: str, positive: bool = False) -> None:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
                or (positive and value == 0)):
            raise BadArgumentException(f"`{name}` must be a number of seconds {'> 0' if positive else '>= 0'}, "
                                       f"not {value!r}", field=name)

    if type(concurrency) is not int or concurrency < 1:
        raise BadArgumentException(f"`concurrency` must be an int >= 1, not {concurrency!r}", field="concurrency")
    if type(finish_batch) is not int or not 1 <= finish_batch <= C.MAX_DEQUEUE_COUNT:
        raise BadArgumentException(f"`finish_batch` must be an int from 1 to {C.MAX_DEQUEUE_COUNT}", field="finish_batch")
    number(finish_delay, "finish_delay")
    number(grace_period, "grace_period")
    number(wait_timeout, "wait_timeout", positive=True)
    if job_timeout is not None:
        number(job_timeout, "job_timeout", positive=True)
    if not callable(retry_backoff):
        number(retry_backoff, "retry_backoff")
    if dead_letter is not None:
        if not isinstance(dead_letter, str) or not dead_letter:
            raise BadArgumentException("`dead_letter` must be a queue type name or None", field="dead_letter")
        _core.core.check_identifier(dead_letter, "dead_letter")
        if dead_letter in C.RESERVED_QUEUE_TYPES or dead_letter in queue_types:
            raise BadArgumentException(f"`dead_letter` {dead_letter!r} must be a queue type of its own, not one "
                                       "this consumer serves (its jobs would come back with fresh retries) or a "
                                       "reserved one", field="dead_letter")
    if on_discard is not None and not callable(on_discard):
        raise BadArgumentException("`on_discard` must be a function taking a discarded Job", field="on_discard")
