"""Queue-level operations of the cluster layout (see ``_ops_cluster``): requeue, metrics,
interval, clear_queue, queue_length, deep_status, the requeuer's lock, script loading.
Whatever spans partitions (requeue, metrics) reads or runs every partition of every queue
type in one round: one pipeline per node, the nodes in parallel."""

from typing import Any, Dict, List, Optional, Tuple, Union

from redis.exceptions import ResponseError

from . import _constants as C
from . import _core
from ._cluster_keys import Partitions, partition_of
from ._ops import checked, queue_args, queue_type_arg, wake_channel
from ._ops_cluster import command, partition_call, run_calls, type_partitions
from ._ops_queues import _counts, _minutes
from ._rounds import Op, Round
from ._settings import Settings
from .exceptions import BadArgumentException, BatchError, OutcomeUnknownError
from .types import GlobalMetrics, QueueMetrics, QueueTypeMetrics, RequeueResult


#: 1 when a partition's ready or active set holds more than its placeholder '~' (a read:
#: EVAL of a constant script, so that it costs one command per partition).
_HAS_QUEUES = "return (redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) > (redis.call('EXISTS', KEYS[1]) + redis.call('EXISTS', KEYS[2]))) and 1 or 0"


def all_types(s: Settings) -> Op[Dict[str, Partitions]]:
    """Every queue type of the registry, with its partitions."""
    cs = s.cluster
    (reply,) = yield Round([command(b"HGETALL", cs.registry)], writes=False, slots=[cs.registry_slot])
    reply = checked(reply)
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])  # RESP3 or 2
    found = {}
    for name, count in pairs:
        parts = cs.known(name.decode(), count)
        if parts is not None:
            found[parts.queue_type] = parts
    return found


# -- requeue ----------------------------------------------------------------------------


def requeue(s: Settings) -> Op[RequeueResult]:
    """Requeue expired jobs of every partition of every queue type (see requeue_pass)."""
    result, _ = yield from requeue_pass(s)
    return result


def requeue_pass(s: Settings) -> Op[Tuple[RequeueResult, Optional[int]]]:
    """``_ops_queues.requeue_pass`` on the cluster: every partition of every queue type in
    steps of REQUEUE_BATCH jobs, each step one round over all nodes. The last step of each
    partition also forgets the intervals of its gone queues whose forgetting is due
    (lua/cluster/_partition.lua: forget_due_intervals). Returns the result and the earliest
    lease expiry left (ms, or None)."""
    now = s.clock()
    types = yield from all_types(s)
    result = RequeueResult(requeued=0, discarded=[])
    errors: List[str] = []
    discards: Dict[str, List[Any]] = {}
    next_expiry: Optional[int] = None
    pending = [(parts, p) for _, parts in sorted(types.items()) for p in range(parts.count)]
    while pending:
        calls = []
        for parts, p in pending:
            args = (wake_channel(s, parts.queue_type), s.job_expire_interval, now, C.REQUEUE_BATCH)
            calls.append(partition_call(s, "requeue", parts, p, now, _core.core.pack_args(args), len(args)))
        try:
            replies = yield from run_calls(s, calls)
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(f"{exc}; requeue: what it did so far is in .result", result=result) from exc
        more = []
        for (parts, p), reply in zip(pending, replies):
            if isinstance(reply, ResponseError):
                errors.append(f"{parts.queue_type} partition {p}: {reply}")
                continue
            requeued, again, head, expiry = reply[0], reply[1], reply[2], reply[3]
            result.requeued += requeued
            parts.seen(p, head)
            discarded = _core.core.parse_jobs(reply, parts.queue_type, 4, 0)
            if discarded:
                discards.setdefault(parts.queue_type, []).extend(discarded)
            if again:
                more.append((parts, p))
            elif expiry >= 0 and (next_expiry is None or expiry < next_expiry):
                next_expiry = expiry
        pending = more
    result.discarded = [job for queue_type in sorted(discards) for job in discards[queue_type]]
    if errors:
        raise BatchError(
            f"requeue: {'; '.join(errors)}; the rest was requeued (what was done is in .result)",
            done=result.requeued,
            jobs=result.discarded,
            result=result,
        )
    return result, next_expiry


# -- one queue --------------------------------------------------------------------------


def _queue(s: Settings, queue_type: str, queue_id: str) -> Op[Optional[Tuple[Partitions, int]]]:
    """The partitions of a queue's type and its partition (None: the type is unknown)."""
    found = yield from type_partitions(s, (queue_type,), create=False)
    parts = found.get(queue_type)
    return None if parts is None else (parts, partition_of(queue_id, parts.count))


def clear_queue(s: Settings, queue_type: Any, queue_id: Any, purge_all: bool) -> Op[bool]:
    """Take a queue out of its ready set and delete its jobs, in one atomic call; with
    purge_all also its interval. True when it was ready."""
    queue_args(queue_type, queue_id)
    where = yield from _queue(s, queue_type, queue_id)
    if where is None:
        return False
    parts, p = where
    body = _core.core.pack_args((queue_id, int(bool(purge_all))))
    (reply,) = yield from run_calls(s, [partition_call(s, "clear_queue", parts, p, s.clock(), body, 2)])
    was_ready, _deleted = checked(reply)
    return was_ready == 1


def interval(s: Settings, queue_type: Any, queue_id: Any, value: Any) -> Op[bool]:
    """Set a known queue's interval: True, or False when the queue has none."""
    _core.core.check_interval(value)
    queue_args(queue_type, queue_id)
    where = yield from _queue(s, queue_type, queue_id)
    if where is None:
        return False
    parts, p = where
    body = _core.core.pack_args((queue_id, value))
    (reply,) = yield from run_calls(s, [partition_call(s, "interval", parts, p, s.clock(), body, 2)])
    return checked(reply) == 1


def _length_command(parts: Partitions, p: int, queue_id: str) -> bytes:
    return command(b"ZLEXCOUNT", parts.keys[p][1], f"[{queue_id}:", f"({queue_id};")


def queue_length(s: Settings, queue_type: Any, queue_id: Any) -> Op[int]:
    """How many jobs wait in a queue."""
    _core.core.check_identifier(queue_type, "queue_type")
    _core.core.check_identifier(queue_id, "queue_id")
    _core.core.check_not_reserved(queue_type, queue_id)
    where = yield from _queue(s, queue_type, queue_id)
    if where is None:
        return 0
    parts, p = where
    (reply,) = yield Round([_length_command(parts, p, queue_id)], writes=False, slots=[parts.slots[p]])
    return int(checked(reply))


def deep_status(s: Settings) -> Op[bool]:
    """Write SharQ's deep status key (a resend writes the same value)."""
    key = C.DEEP_STATUS_KEY.format(prefix=s.key_prefix)
    (reply,) = yield Round([command(b"SET", key, C.DEEP_STATUS_VALUE)], slots=[s.cluster.slot(key)])
    return checked(reply) == b"OK"


def lock(s: Settings, token: str, ttl_ms: int) -> Op[bool]:
    """Take or keep the requeue lock of the key prefix (ttl 0: give it up)."""
    key = C.REQUEUE_LOCK_KEY.format(prefix=s.key_prefix)
    call = _core.core.pack_evalsha(s.sha["lock"], (key,), (token, ttl_ms))
    (reply,) = yield Round([call], slots=[s.cluster.slot(key)])
    return checked(reply) == 1


def load_scripts(s: Settings) -> Op[None]:
    """Load every script into every master (transports do it by themselves on NOSCRIPT)."""
    replies = yield Round([command(b"SCRIPT", b"LOAD", script.source) for script in s.scripts.values()])
    for reply in replies:
        checked(reply)


# -- metrics ----------------------------------------------------------------------------


def metrics(
    s: Settings, queue_type: Any, queue_id: Any
) -> Op[Union[GlobalMetrics, QueueTypeMetrics, QueueMetrics]]:
    """Global metrics (summed over every partition), a queue type's queue ids, or one
    queue's metrics; the same answers and checks as on one node."""
    if queue_id is not None:
        _core.core.check_identifier(queue_id, "queue_id")
    if queue_type is not None:
        _core.core.check_identifier(queue_type, "queue_type")
    minutes = _minutes(s)
    if queue_type is None and queue_id is None:
        types = yield from all_types(s)
        commands, slots = [], []
        for _, parts in sorted(types.items()):
            for p in range(parts.count):
                ready, active = parts.keys[p][0], parts.keys[p][6]
                # More than the placeholder '~' in the ready or the active set.
                commands.append(command(b"EVAL", _HAS_QUEUES, 2, ready, active))
                commands.extend(command(b"HMGET", f"{parts.tags[p]}:counters:{m}", "e", "d") for m in minutes)
                slots.extend([parts.slots[p]] * (1 + len(minutes)))
        replies = (yield Round(commands, writes=False, slots=slots)) if commands else []
        names, enqueues, dequeues = [], [0] * len(minutes), [0] * len(minutes)
        step = 1 + len(minutes)
        for t, (name, parts) in enumerate(sorted(types.items())):
            base = sum(types[n].count for n in sorted(types)[:t]) * step
            live = False
            for p in range(parts.count):
                at = base + p * step
                live = live or checked(replies[at]) > 0
                for k in range(len(minutes)):
                    e, d = checked(replies[at + 1 + k])
                    enqueues[k] += int(e or 0)
                    dequeues[k] += int(d or 0)
            if live:
                names.append(name)
        enqueue_counts, dequeue_counts = _counts(minutes, enqueues, dequeues)
        return GlobalMetrics(names, enqueue_counts, dequeue_counts)
    if queue_type is None:
        raise BadArgumentException("`queue_id` should be accompanied by `queue_type`.", field="queue_id")
    if queue_id is None:
        queue_type_arg(queue_type)
        found = yield from type_partitions(s, (queue_type,), create=False)
        parts = found.get(queue_type)
        if parts is None:
            return QueueTypeMetrics([])
        commands = []
        for keys in parts.keys:
            commands.append(command(b"ZRANGE", keys[0], 0, -1))
            commands.append(command(b"ZRANGE", keys[6], 0, -1))
        replies = yield Round(commands, writes=False, slots=[slot for slot in parts.slots for _ in (0, 1)])
        ids = set()
        for p in range(parts.count):
            ids.update(member.decode() for member in checked(replies[2 * p]) if member != b"~")
            ids.update(member.decode().split(":", 1)[0] for member in checked(replies[2 * p + 1]) if member != b"~")
        return QueueTypeMetrics(sorted(ids))
    _core.core.check_not_reserved(queue_type, queue_id)
    where = yield from _queue(s, queue_type, queue_id)
    if where is None:
        zeros = {minute: 0 for minute in minutes}
        return QueueMetrics(dict(zeros), dict(zeros), 0)
    parts, p = where
    commands = [command(b"HMGET", f"{parts.tags[p]}:counters:{m}", f"e:{queue_id}", f"d:{queue_id}") for m in minutes]
    commands.append(_length_command(parts, p, queue_id))
    replies = yield Round(commands, writes=False, slots=[parts.slots[p]] * len(commands))
    pairs = [checked(reply) for reply in replies[:-1]]
    enqueue_counts, dequeue_counts = _counts(minutes, [e for e, _ in pairs], [d for _, d in pairs])
    return QueueMetrics(enqueue_counts, dequeue_counts, int(checked(replies[-1])))
