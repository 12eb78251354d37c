"""Queue-level operations, written once (see ``_ops``): requeue, metrics, interval,
clear_queue, queue_length, deep_status, the requeuer's lock and script loading."""

import uuid
from typing import Any, Dict, List, Optional, Tuple, Union

from redis.exceptions import ResponseError

from . import _constants as C
from . import _core
from ._ops import checked, prefix_key, queue_args, queue_type_arg, replied_evalsha
from ._rounds import Op, Round
from ._settings import Settings
from .exceptions import BadArgumentException, BatchError, OutcomeUnknownError
from .types import GlobalMetrics, QueueMetrics, QueueTypeMetrics, RequeueResult


def command(*args: Any) -> bytes:
    """The RESP of one plain Redis command."""
    return _core.core.pack_command(args)


def evalsha(s: Settings, script: str, keys: Tuple[Any, ...], args: Tuple[Any, ...]) -> bytes:
    """The RESP of a call of a script that is safe to resend as it is."""
    return _core.core.pack_evalsha(s.sha[script], keys, args)


# -- requeue ----------------------------------------------------------------------------


def requeue(s: Settings) -> Op[RequeueResult]:
    """Put expired active jobs back at the front of their queues, and discard those out of
    requeues (see requeue_pass)."""
    result, _ = yield from requeue_pass(s)
    return result


def requeue_pass(s: Settings) -> Op[Tuple[RequeueResult, Optional[int]]]:
    """Requeue every queue type, its steps of REQUEUE_BATCH jobs in parallel round trips,
    then forget the intervals of emptied queues of discarded jobs and of up to FORGET_BATCH
    queues whose forgetting was deferred and is due (P:.forget_intervals: finish and fail
    record emptied queues there), and finish purges that were cut short. Returns the result
    and the earliest lease expiry left (ms, or None).

    One failing queue type does not stop the others: the errors are raised at the end as
    a BatchError whose ``result`` holds what was done, discarded jobs included."""
    now, prefix = s.clock(), s.key_prefix
    active_types, purging, due = yield Round(
        [
            command(b"SMEMBERS", f"{prefix}:active:queue_type"),
            command(b"SMEMBERS", f"{prefix}:.purging"),
            command(b"ZRANGEBYSCORE", f"{prefix}:.forget_intervals", b"-inf", now, b"LIMIT", 0, C.FORGET_BATCH),
        ],
        writes=False,
    )
    result = RequeueResult(requeued=0, discarded=[])
    errors: List[str] = []
    offsets: Dict[str, int] = {}
    emptied: Dict[str, set] = {}
    if not isinstance(due, ResponseError):  # (a key of another type: nothing is deferred there)
        for member in due:
            queue_type, _, queue_id = member.decode().partition(":")
            if queue_id:
                emptied.setdefault(queue_type, set()).add(queue_id)
    discards: Dict[str, List[Any]] = {}
    next_expiry: Optional[int] = None
    pending = sorted(raw.decode() for raw in checked(active_types))
    while pending:
        calls = [
            replied_evalsha(s, "requeue", (f"{prefix}:", f"{prefix}:{queue_type}"), (now, C.REQUEUE_BATCH, offsets.get(queue_type, 0)))
            for queue_type in pending
        ]
        try:
            replies = yield Round([call for call, _ in calls])
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(f"{exc}; requeue: what it did so far is in .result", result=result) from exc
        s.tokens.read([token for _, token in calls])
        more = []
        for queue_type, reply in zip(pending, replies):
            if isinstance(reply, ResponseError):
                errors.append(f"{queue_type}: {reply}")
                continue
            requeued, again, skipped, expiry = reply[0], reply[1], reply[2], reply[3]
            result.requeued += requeued
            if skipped:
                offsets[queue_type] = offsets.get(queue_type, 0) + skipped
                errors.append(f"{queue_type}: {skipped} expired jobs left alone, their queue's keys hold another type")
            discarded = _core.core.parse_jobs(reply, queue_type, 4, 0)
            discards.setdefault(queue_type, []).extend(discarded)
            emptied.setdefault(queue_type, set()).update(job.queue_id for job in discarded)
            if again:
                more.append(queue_type)
            elif expiry >= 0 and (next_expiry is None or expiry < next_expiry):
                next_expiry = expiry
        pending = more
        # Discarded jobs by queue type, then in the order each type's steps found them.
        result.discarded = [job for queue_type in sorted(discards) for job in discards[queue_type]]
    forgets = [
        evalsha(s, "forget_intervals", (f"{prefix}:", f"{prefix}:{queue_type}"), (now, s.job_expire_interval, *sorted(queue_ids)))
        for queue_type, queue_ids in emptied.items()
        if queue_ids
    ]
    if forgets:
        for reply in (yield Round(forgets)):
            if isinstance(reply, ResponseError):
                errors.append(f"forgetting intervals: {reply}")
    for raw in checked(purging):
        yield from purge_set_aside(s, raw.decode())
    if errors:
        raise BatchError(
            f"requeue: {'; '.join(errors)}; the rest was requeued (what was done is in .result)",
            done=result.requeued,
            jobs=result.discarded,
            result=result,
        )
    return result, next_expiry


# -- clear_queue ------------------------------------------------------------------------


def clear_queue(s: Settings, queue_type: Any, queue_id: Any, purge_all: bool) -> Op[bool]:
    """Take a queue out of its ready set and delete its jobs (payloads and requeue counts
    included, in bounded steps); with purge_all also its interval. True when it was ready."""
    queue_args(queue_type, queue_id)
    set_aside = f"{s.key_prefix}:.purging:{queue_type}:{queue_id}:{uuid.uuid4().hex}"
    call, token = replied_evalsha(
        s, "clear_queue", (prefix_key(s), set_aside), (queue_type, queue_id, int(bool(purge_all)))
    )
    (reply,) = yield Round((call,))
    s.tokens.read((token,))
    was_ready, to_purge = checked(reply)
    if to_purge:
        yield from purge_set_aside(s, set_aside)
    return was_ready == 1


def purge_set_aside(s: Settings, key: str) -> Op[None]:
    """Delete the jobs of a job list clear_queue set aside (P:.purging:T:Q:<unique>)."""
    queue_type, queue_id, _ = key[len(s.key_prefix) + len(":.purging:") :].split(":", 2)
    call = evalsha(s, "purge_jobs", (prefix_key(s), key), (queue_type, queue_id, C.PURGE_BATCH))
    while checked((yield Round((call,)))[0]):
        pass


# -- small operations -------------------------------------------------------------------


def interval(s: Settings, queue_type: Any, queue_id: Any, value: Any) -> Op[bool]:
    """Set a known queue's interval: True, or False when the queue has none."""
    _core.core.check_interval(value)
    queue_args(queue_type, queue_id)
    call, token = replied_evalsha(
        s, "interval", (f"{s.key_prefix}:interval",), (f"{queue_type}:{queue_id}", value)
    )
    (reply,) = yield Round((call,))
    s.tokens.read((token,))
    return checked(reply) == 1


def queue_length(s: Settings, queue_type: Any, queue_id: Any) -> Op[int]:
    """LLEN of a queue's job list."""
    _core.core.check_identifier(queue_type, "queue_type")
    _core.core.check_identifier(queue_id, "queue_id")
    _core.core.check_not_reserved(queue_type, queue_id)
    (reply,) = yield Round((command(b"LLEN", f"{s.key_prefix}:{queue_type}:{queue_id}"),), writes=False)
    return int(checked(reply))


def deep_status(s: Settings) -> Op[bool]:
    """Write SharQ's deep status key (a resend writes the same value)."""
    key = C.DEEP_STATUS_KEY.format(prefix=s.key_prefix)
    (reply,) = yield Round((command(b"SET", key, C.DEEP_STATUS_VALUE),))
    return checked(reply) == b"OK"


def lock(s: Settings, token: str, ttl_ms: int) -> Op[bool]:
    """Take or keep the requeue lock of the key prefix (ttl 0: give it up). True while held."""
    key = C.REQUEUE_LOCK_KEY.format(prefix=s.key_prefix)
    (reply,) = yield Round((evalsha(s, "lock", (key,), (token, ttl_ms)),))
    return checked(reply) == 1


def load_scripts(s: Settings) -> Op[None]:
    """Load every script into Redis (transports do it by themselves on NOSCRIPT)."""
    replies = yield Round([command(b"SCRIPT", b"LOAD", script.source) for script in s.scripts.values()])
    for reply in replies:
        checked(reply)


# -- metrics ----------------------------------------------------------------------------


def metrics(
    s: Settings, queue_type: Any, queue_id: Any
) -> Op[Union[GlobalMetrics, QueueTypeMetrics, QueueMetrics]]:
    """Global metrics, a queue type's queue ids, or one queue's metrics (SharQ's checks:
    an argument that is not None is validated, queue_id first)."""
    if queue_id is not None:
        _core.core.check_identifier(queue_id, "queue_id")
    if queue_type is not None:
        _core.core.check_identifier(queue_type, "queue_type")
    prefix = s.key_prefix
    if queue_type is None and queue_id is None:
        minutes = _minutes(s)
        replies = yield Round(
            [
                command(b"SUNION", f"{prefix}:active:queue_type", f"{prefix}:ready:queue_type"),
                *_counter_commands(prefix, minutes),
            ],
            writes=False,
        )
        types, enqueues, dequeues = (checked(reply) for reply in replies)
        enqueue_counts, dequeue_counts = _counts(minutes, enqueues, dequeues)
        return GlobalMetrics(sorted(t.decode() for t in types), enqueue_counts, dequeue_counts)
    if queue_type is None:
        raise BadArgumentException("`queue_id` should be accompanied by `queue_type`.", field="queue_id")
    if queue_id is None:
        queue_type_arg(queue_type)
        replies = yield Round(
            [
                command(b"ZRANGE", f"{prefix}:{queue_type}", 0, -1),
                command(b"ZRANGE", f"{prefix}:{queue_type}:active", 0, -1),
            ],
            writes=False,
        )
        ready, active = (checked(reply) for reply in replies)
        ids = {member.decode() for member in ready}
        ids.update(member.decode().split(":", 1)[0] for member in active)
        return QueueTypeMetrics(sorted(ids))
    _core.core.check_not_reserved(queue_type, queue_id)
    queue_key = f"{prefix}:{queue_type}:{queue_id}"
    minutes = _minutes(s)
    replies = yield Round([*_counter_commands(queue_key, minutes), command(b"LLEN", queue_key)], writes=False)
    enqueues, dequeues, length = (checked(reply) for reply in replies)
    enqueue_counts, dequeue_counts = _counts(minutes, enqueues, dequeues)
    return QueueMetrics(enqueue_counts, dequeue_counts, length)


def _minutes(s: Settings) -> List[int]:
    newest = s.clock() // C.MINUTE_MS * C.MINUTE_MS
    return [newest - i * C.MINUTE_MS for i in range(C.METRICS_WINDOWS)]


def _counter_commands(base: str, minutes: List[int]) -> List[bytes]:
    return [
        command(b"MGET", *[f"{base}:{kind}_counter:{minute}" for minute in minutes])
        for kind in ("enqueue", "dequeue")
    ]


def _counts(minutes: List[int], enqueues: List[Any], dequeues: List[Any]) -> Any:
    return (
        {minute: int(value or 0) for minute, value in zip(minutes, enqueues)},
        {minute: int(value or 0) for minute, value in zip(minutes, dequeues)},
    )
