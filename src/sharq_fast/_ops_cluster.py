"""The job operations of the cluster layout (docs/cluster-layout.md), in the style of
``_ops``: generators of requests, no I/O. Every Round says the slot of each command, and
a cluster transport sends each command to the node that serves its slot; one partition's
calls touch one slot.

Queue-level operations (requeue, metrics, ...) are in ``_ops_cluster_queues``.
"""

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from redis.exceptions import ResponseError

from . import _constants as C
from . import _core
from ._cluster_keys import Partitions, partition_of
from ._ops import FAIL_OUTCOMES, check_batching, checked, extend_args, fail_args, int_arg, queue_type_arg, wake_channel
from ._rounds import Collect, Draw, Op, Round, Send, Wait, Watch
from ._replication import replicas_for
from ._settings import Settings, seconds
from .exceptions import BadArgumentException, BatchError, OutcomeUnknownError
from .types import EnqueueResult, FailOutcome, Job, JobRequest

#: Most rounds of partition calls one dequeue makes before it answers with what it has.
MAX_DEQUEUE_STEPS = 6
#: A dequeue_many asks each partition for at least this many jobs (fewer calls per job).
MIN_SHARE = 8

#: command, slot, (reply cache, token), (partitions, p)
Call = Tuple[bytes, int, Tuple[str, int], Tuple[Partitions, int]]


def command(*args: Any) -> bytes:
    """The RESP of one plain Redis command."""
    return _core.core.pack_command(args)


def partition_call(
    s: Settings, script: str, parts: Partitions, p: int, now: int, body: bytes, argc: int
) -> Call:
    """One call of a partition script behind the reply cache (token and acks last)."""
    keys = s.cluster.partition_keys(parts, p, now)
    token, tail, tail_argc = s.cluster.tokens.tail(keys[0])
    head = _core.core.evalsha_head(s.sha[script], keys, argc + tail_argc)
    return head + body + tail, parts.slots[p], (keys[0], token), (parts, p)


def run_calls(s: Settings, calls: Sequence[Call], writes: bool = True) -> Op[List[Any]]:
    """Send partition calls in one round (each to its node); acknowledge their replies."""
    replies = yield Round([c[0] for c in calls], writes, slots=[c[1] for c in calls])
    s.cluster.tokens.read([c[2] for c in calls])
    return replies


def type_partitions(s: Settings, queue_types: Iterable[str], create: bool) -> Op[Dict[str, Partitions]]:
    """The partitions of queue types, from the registry ``{P}:.types`` (read once per
    client and type). `create`: a type not in it yet gets the default count (HSETNX: the
    first writer's count wins); else unknown types are left out."""
    cs = s.cluster
    found = {t: cs.types[t] for t in queue_types if t in cs.types}
    missing = sorted(set(queue_types) - set(found))
    if missing:
        commands = []
        for queue_type in missing:
            if create:
                commands.append(command(b"HSETNX", cs.registry, queue_type, cs.default_partitions))
            commands.append(command(b"HGET", cs.registry, queue_type))
        replies = yield Round(commands, writes=create, slots=[cs.registry_slot] * len(commands))
        step = 2 if create else 1
        for queue_type, reply in zip(missing, replies[step - 1 :: step]):
            parts = cs.known(queue_type, checked(reply))
            if parts is not None:
                found[queue_type] = parts
    return found


def refresh_heads(s: Settings, parts: Partitions) -> Op[None]:
    """Read the head of every partition of a queue type (one pipeline per node)."""
    parts.refreshed = time.monotonic()
    replies = yield Round(
        [command(b"ZRANGE", keys[0], 0, 0, b"WITHSCORES") for keys in parts.keys], writes=False, slots=parts.slots
    )
    for p, reply in enumerate(replies):
        reply = checked(reply)
        if reply and isinstance(reply[0], list):  # RESP3: [[member, score]]
            reply = reply[0]
        # A partition's placeholder '~' (score +inf) means no queue is ready.
        parts.seen(p, int(float(reply[1])) if reply and reply[0] != b"~" else -1)


# -- enqueue ----------------------------------------------------------------------------


def _ids(job: Any) -> Tuple[Any, Any]:
    """(queue_type, queue_id) of a job request, unchecked (validation comes later)."""
    if isinstance(job, dict):
        return job.get("queue_type", C.DEFAULT_QUEUE_TYPE), job.get("queue_id")
    if isinstance(job, JobRequest):
        return job.queue_type, job.queue_id
    return None, None


def _pack_round(s: Settings, batch: List[Any], start: int, chunk_size: int) -> Op[Any]:
    """(calls, positions, error) of one round of enqueue_many: the jobs grouped by
    partition, chunk_size a call; positions[c] are the offsets in `batch` of call c's jobs.
    A bad job's error comes with the calls of the jobs before its chunk. A new queue type
    is registered only once its jobs passed validation (bad input writes nothing)."""
    now, limit, cs = s.clock(), s.default_job_requeue_limit, s.cluster
    names = set()
    for job in batch:
        queue_type = _ids(job)[0]
        if isinstance(queue_type, str) and queue_type not in cs.types:
            try:
                names.add(queue_type_arg(queue_type))
            except BadArgumentException:
                pass  # reported by the validation below, with its index
    known = dict(cs.types)
    tentative: Dict[str, Partitions] = {}
    if names:
        known.update((yield from type_partitions(s, names, create=False)))
        tentative = {n: Partitions(cs.key_prefix, n, cs.default_partitions) for n in names if n not in known}
        known.update(tentative)
    groups: Dict[Tuple[str, int], List[int]] = {}
    invalid = []
    for i, job in enumerate(batch):
        queue_type, queue_id = _ids(job)
        parts = known.get(queue_type) if isinstance(queue_type, str) else None
        if parts is None or not isinstance(queue_id, str):
            invalid.append(i)
            continue
        groups.setdefault((queue_type, partition_of(queue_id, parts.count)), []).append(i)
    try:
        if invalid:
            _core.core.enqueue_chunks(now, [batch[i] for i in invalid], limit, start, chunk_size)
        packed = []
        for (queue_type, p), indexes in groups.items():
            bodies, parts_positions = _core.core.enqueue_chunks(
                now, [batch[i] for i in indexes], limit, start, chunk_size
            )
            head = _core.core.pack_args((wake_channel(s, queue_type), s.job_expire_interval))
            for body, part in zip(bodies, parts_positions):
                packed.append((queue_type, p, head + body, 2 + 1 + 6 * len(part), [indexes[k] for k in part]))
    except BadArgumentException:
        # Some job is bad: find the first (its index and message as on one node) and send
        # the chunks before it.
        try:
            _core.core.enqueue_chunks(now, batch, limit, start, len(batch))
        except BadArgumentException as exc:
            valid = ((exc.index or start) - start) // chunk_size * chunk_size
            calls, positions, _ = yield from _pack_round(s, batch[:valid], start, chunk_size)
            return calls, positions, exc
        raise AssertionError("a job failed validation in a group but not in the batch") from None
    if tentative:
        registered = yield from type_partitions(s, tentative, create=True)
        for name, parts in tentative.items():
            if registered[name].count != parts.count:  # another client's count won: regroup
                return (yield from _pack_round(s, batch, start, chunk_size))
            cs.types[name] = parts
    calls = [partition_call(s, "enqueue", known[t], p, now, body, argc) for t, p, body, argc, _ in packed]
    return calls, [item[4] for item in packed], None


def enqueue(s: Settings, job: Any) -> Op[bool]:
    """Enqueue one job: True, or False for a duplicate."""
    result = yield from enqueue_many(s, (job,), 1, 1)
    return result.enqueued == 1


def no_replicas(s: Settings, replicas: Optional[int]) -> None:
    """Refuse replicas= (WAIT) on the cluster layout, which does not send it yet."""
    if replicas_for(s, replicas):
        raise BadArgumentException(
            "replicas= (WAIT after writes) is not supported on the cluster layout yet; "
            "see docs/cluster-layout.md for what a failover can lose without it",
            field="replicas",
        )


def enqueue_many(
    s: Settings, jobs: Iterable[Any], chunk_size: int, pipeline_depth: int, replicas: Optional[int] = None
) -> Op[EnqueueResult]:
    """Enqueue jobs from any iterable as ``_ops.enqueue_many`` does; each round's calls go
    to their partitions' nodes, all nodes at once."""
    no_replicas(s, replicas)
    chunk_size = check_batching(chunk_size, pipeline_depth)
    round_size = chunk_size * pipeline_depth
    source = jobs.__aiter__() if hasattr(jobs, "__aiter__") else iter(jobs)
    result = EnqueueResult(enqueued=0, duplicates=[])
    start = 0
    batch = yield Draw(source, round_size)
    in_flight = None
    try:
        while batch:
            calls, positions, error = yield from _pack_round(s, batch, start, chunk_size)
            if in_flight is not None:
                landing, in_flight = in_flight, None
                yield from _land_round(s, landing, result)
            following = (yield Draw(source, round_size)) if len(batch) == round_size else []
            if calls:
                handle = yield Send(Round([c[0] for c in calls], True, slots=[c[1] for c in calls]))
                in_flight = (handle, calls, positions, start)
            if error is not None:
                landing, in_flight = in_flight, None
                if landing is not None:
                    yield from _land_round(s, landing, result)
                error.enqueued = result.enqueued
                raise error
            start += len(batch)
            batch = following
        if in_flight is not None:
            landing, in_flight = in_flight, None
            yield from _land_round(s, landing, result)
        return result
    except OutcomeUnknownError as exc:
        lost = in_flight[3] if in_flight is not None else start
        raise OutcomeUnknownError(
            f"{exc}; enqueue_many: {result.enqueued} jobs are known to be enqueued; send the "
            f"jobs from input position {lost} on again (those that did land are then refused "
            "as duplicates)",
            enqueued=result.enqueued,
            duplicates=result.duplicates,
            resume_from=lost,
        ) from exc


def _land_round(s: Settings, in_flight: Any, result: EnqueueResult) -> Op[None]:
    handle, calls, positions, start = in_flight
    replies = yield Collect(handle)
    s.cluster.tokens.read([c[2] for c in calls])
    refused: List[int] = []
    errors = []
    duplicates = []
    for call, reply, part in zip(calls, replies, positions):
        if isinstance(reply, ResponseError):
            errors.append(reply)
            refused.extend(start + offset for offset in part)
            continue
        _mark_head(s, call, reply[0])
        result.enqueued += len(part) - (len(reply) - 1)
        duplicates.extend(start + part[position - 1] for position in reply[1:])
    result.duplicates.extend(sorted(duplicates))
    if errors:
        raise BatchError(
            f"Redis refused {len(refused)} jobs: {errors[0]}; {result.enqueued} jobs were "
            "enqueued (the refused ones are in .refused)",
            done=result.enqueued,
            refused=sorted(refused),
        )


def _mark_head(s: Settings, call: Call, head: Any) -> None:
    """Record a partition head that the reply of `call` gave."""
    parts, p = call[3]
    parts.seen(p, head)


# -- dequeue ----------------------------------------------------------------------------


def dequeue_many(s: Settings, queue_type: Any, count: Any, timeout: Any) -> Op[List[Job]]:
    """Up to `count` jobs of ready queues, earliest first across partitions as far as this
    client's view of the partition heads goes (docs/cluster-layout.md); with a timeout,
    wait as ``_ops.dequeue_many`` does."""
    queue_type_arg(queue_type)
    int_arg(count, "count", 1, C.MAX_DEQUEUE_COUNT)
    timeout = seconds(timeout, "timeout", allow_none=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = wake_channel(s, queue_type)
    seen = (yield Watch(channel)) if timeout else 0
    while True:
        now = s.clock()
        jobs, next_ready = yield from _dequeue_round(s, queue_type, count, now)
        if jobs or deadline is None:
            return jobs
        left = deadline - time.monotonic()
        if left <= 0:
            return jobs
        pause = min(left, s.wait_poll_interval)
        if next_ready >= 0:
            pause = min(pause, max((next_ready - now) / 1000, 0.001))
        seen = yield Wait(channel, seen, pause)


def _shares(ready: List[int], count: int) -> List[Tuple[int, int]]:
    """(partition, jobs to ask it for): `count` spread over the earliest ready partitions,
    at least MIN_SHARE each where count allows, never more than count in all."""
    k = max(1, min(len(ready), count // MIN_SHARE, count))
    base, extra = divmod(count, k)
    return [(p, base + (1 if i < extra else 0)) for i, p in enumerate(ready[:k])]


def _dequeue_round(s: Settings, queue_type: str, count: int, now: int) -> Op[Tuple[List[Job], int]]:
    found = yield from type_partitions(s, (queue_type,), create=False)
    parts = found.get(queue_type)
    if parts is None:
        return [], -1
    jobs: List[Job] = []
    refreshed = False
    if parts.stale():
        yield from refresh_heads(s, parts)
        refreshed = True
    error = None
    for _ in range(MAX_DEQUEUE_STEPS):
        ready = parts.ready(now)
        if not ready:
            if refreshed:
                break
            yield from refresh_heads(s, parts)
            refreshed = True
            continue
        shares = _shares(ready, count - len(jobs))
        calls, asked = [], []
        for p, share in shares:
            for done in range(0, share, C.MAX_DEQUEUE_PER_CALL):
                n = min(C.MAX_DEQUEUE_PER_CALL, share - done)
                body = _core.core.pack_args((now, s.job_expire_interval, n))
                calls.append(partition_call(s, "dequeue", parts, p, now, body, 3))
                asked.append(p)
        try:
            replies = yield from run_calls(s, calls)
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(
                f"{exc}; dequeue: if Redis ran it, the jobs it took are active and come back "
                "by requeue after job_expire_interval"
            ) from exc
        for p, reply in zip(asked, replies):
            if isinstance(reply, ResponseError):
                error = error or reply
                parts.heads[p] = now + 1  # look again later, not at once
            else:
                parts.seen(p, reply[0])
                jobs.extend(_core.core.parse_jobs(reply, queue_type, 2, reply[1]))
        if error is not None or len(jobs) >= count:
            break
    if error is not None:
        raise BatchError(
            f"Redis refused a dequeue: {error}; {len(jobs)} jobs were dequeued (in .jobs)",
            done=len(jobs),
            jobs=jobs,
        )
    heads = [head for head in parts.heads if head != float("inf")]
    return jobs, int(min(heads)) if heads else -1


def dequeue(s: Settings, queue_type: Any, timeout: Any) -> Op[Optional[Job]]:
    """The next job of the ready queue of `queue_type` that is due first, or None."""
    jobs = yield from dequeue_many(s, queue_type, 1, timeout)
    return jobs[0] if jobs else None


# -- finish, extend, release ------------------------------------------------------------


def _job_ref_calls(
    s: Settings,
    script: str,
    jobs: Sequence[Any],
    chunk_size: int,
    need_lease: bool,
    head_args: Union[Sequence[Any], Callable[[str], Sequence[Any]]],
) -> Op[List[Any]]:
    """``_ops._job_ref_rounds`` on the cluster: jobs validated first (a bad one raises and
    changes nothing), grouped by partition, `chunk_size` a call, one round over all nodes;
    one reply value per job, in input order. `head_args` may be a function of the queue
    type (arguments that differ by type, such as its wake-up channel)."""
    single = chunk_size == 0
    chunk_size = chunk_size or 1
    _core.core.pack_job_refs(jobs, -1 if single else 0, need_lease)  # validates all
    refs = [_ref(job) for job in jobs]
    known = yield from type_partitions(s, {ref[0] for ref in refs}, create=False)
    now = s.clock()
    heads: Dict[str, Tuple[bytes, int]] = {}
    for queue_type in known:
        args = head_args(queue_type) if callable(head_args) else head_args
        heads[queue_type] = (_core.core.pack_args(args), len(args))
    groups: Dict[Tuple[str, int], List[int]] = {}
    unknown = []
    for i, (queue_type, queue_id) in enumerate(refs):
        parts = known.get(queue_type)
        if parts is None:
            unknown.append(i)  # a queue type never used: none of its jobs is active
        else:
            groups.setdefault((queue_type, partition_of(queue_id, parts.count)), []).append(i)
    calls, positions = [], []
    for (queue_type, p), indexes in groups.items():
        for start in range(0, len(indexes), chunk_size):
            part = indexes[start : start + chunk_size]
            body = _core.core.pack_job_refs([jobs[i] for i in part], 0, need_lease)
            head, argc = heads[queue_type]
            calls.append(partition_call(s, script, known[queue_type], p, now, head + body, argc + 4 * len(part)))
            positions.append(part)
    results: List[Any] = [0] * len(jobs)
    if not calls:
        return results
    try:
        replies = yield from run_calls(s, calls)
    except OutcomeUnknownError as exc:
        raise OutcomeUnknownError(
            f"{exc}; {script}: the outcome of all {len(jobs)} jobs is unknown (in .unknown); "
            f"send them again",
            unknown=list(range(len(jobs))),
        ) from exc
    refused: List[int] = []
    errors = []
    for part, reply in zip(positions, replies):
        if isinstance(reply, ResponseError):
            errors.append(reply)
            refused.extend(part)
        else:
            for i, value in zip(part, reply):
                results[i] = value
    if errors:
        raise BatchError(
            f"Redis refused to {script} {len(refused)} jobs: {errors[0]} (they are in .refused)",
            done=sum(1 for value in results if value),
            refused=sorted(refused),
        )
    return results


def _ref(job: Any) -> Tuple[str, str]:
    if isinstance(job, Job):
        return job.queue_type, job.queue_id
    return job[0], job[1]


def finish(s: Settings, queue_type: Any, queue_id: Any, job_id: Any) -> Op[bool]:
    """Finish one active job by its ids (SharQ's finish)."""
    head = (s.job_expire_interval, s.clock())
    results = yield from _job_ref_calls(s, "finish", ((queue_type, queue_id, job_id),), 0, False, head)
    return results[0] == 1


def finish_many(s: Settings, jobs: Iterable[Any], chunk_size: int, replicas: Optional[int] = None) -> Op[List[bool]]:
    """Finish jobs: a Job only while its lease is the caller's, an ids tuple if active."""
    no_replicas(s, replicas)
    chunk_size = check_batching(chunk_size, 1)
    head = (s.job_expire_interval, s.clock())
    results = yield from _job_ref_calls(s, "finish", list(jobs), chunk_size, False, head)
    return [value == 1 for value in results]


def extend_many(s: Settings, jobs: Iterable[Any], ms: Any, chunk_size: int) -> Op[List[bool]]:
    """Move the lease of each Job still held to now + ms; updates the Jobs' expires_at."""
    items = extend_args(jobs, ms)
    chunk_size = check_batching(chunk_size, 1)
    expiries = yield from _job_ref_calls(s, "extend", items, chunk_size, True, (s.clock(), ms))
    for job, expiry in zip(items, expiries):
        if expiry:
            job.expires_at = expiry
    return [bool(expiry) for expiry in expiries]


def release_many(s: Settings, jobs: Iterable[Any], chunk_size: int) -> Op[List[bool]]:
    """Put dequeued jobs still held back at the front of their queues, uncounted."""
    chunk_size = check_batching(chunk_size, 1)
    items = list(jobs)
    # The wake-up channel differs by queue type: one call per type's group of partitions.
    by_type: Dict[str, List[int]] = {}
    _core.core.pack_job_refs(items, 0, True)
    for i, job in enumerate(items):
        by_type.setdefault(_ref(job)[0], []).append(i)
    results: List[Any] = [0] * len(items)
    for queue_type, indexes in by_type.items():
        head = (wake_channel(s, queue_type), s.job_expire_interval, s.clock())
        values = yield from _job_ref_calls(s, "release", [items[i] for i in indexes], chunk_size, True, head)
        for i, value in zip(indexes, values):
            results[i] = value
    return [value == 1 for value in results]


# -- fail -------------------------------------------------------------------------------


def fail_many(
    s: Settings, jobs: Iterable[Any], backoff_ms: Any, dead_letter: Any, chunk_size: int
) -> Op[List[FailOutcome]]:
    """``_ops.fail_many`` on the cluster. The dead-letter type's partitions are in other
    slots than the jobs', so dead-lettering takes three steps: lua/cluster/fail.lua holds
    the jobs out of requeues (still active, under the caller's lease) and gives their
    payloads; they are enqueued into the dead-letter type; then discarded by a second
    fail.lua call. A client that dies between leaves them active: the requeuer discards
    them, and their dead-letter copies stay (never lost, at worst in both places)."""
    chunk_size = check_batching(chunk_size, 1)
    items = list(jobs)
    dead_letter = fail_args(items, backoff_ms, dead_letter)
    _core.core.pack_job_refs(items, 0, True)  # validates every job before anything is sent

    def head(hold: int) -> Callable[[str], Tuple[Any, ...]]:
        now = s.clock()  # one instant for every call of a step
        return lambda queue_type: (wake_channel(s, queue_type), s.job_expire_interval, now, backoff_ms, hold)

    try:
        values = yield from _job_ref_calls(s, "fail", items, chunk_size, True, head(1 if dead_letter else 0))
        held = [i for i, value in enumerate(values) if isinstance(value, bytes)]
        outcomes = [
            FailOutcome.DEAD_LETTERED if isinstance(value, bytes) else FAIL_OUTCOMES[value] for value in values
        ]
        if not held:
            return outcomes
        refused = yield from _dead_letter(
            s, dead_letter, [items[i] for i in held], [values[i] for i in held], chunk_size
        )
        moved = [i for k, i in enumerate(held) if k not in refused]
        # Their copies are in the dead-letter type: discard them (lease-checked; they are
        # out of requeues, so this fail call discards, and nothing else can have).
        yield from _job_ref_calls(s, "fail", [items[i] for i in moved], chunk_size, True, head(0))
    except OutcomeUnknownError as exc:
        raise OutcomeUnknownError(
            f"{exc}; fail: the outcome of all {len(items)} jobs is unknown (in .unknown); fail them "
            "again (a job already dead-lettered is then kept once, and reported LOST)",
            unknown=list(range(len(items))),
        ) from exc
    if refused:
        positions = sorted(held[k] for k in refused)
        raise BatchError(
            f"Redis refused to enqueue {len(positions)} jobs into the dead-letter queue type "
            f"{dead_letter!r} (they are in .refused): they are still active under your lease; "
            "fail them again once the cause is fixed",
            done=sum(1 for i, o in enumerate(outcomes) if o != FailOutcome.LOST and i not in positions),
            refused=positions,
        )
    return outcomes


def _dead_letter(
    s: Settings, dead_letter: str, jobs: List[Any], payloads: List[bytes], chunk_size: int
) -> Op[Set[int]]:
    """Enqueue `jobs` into `dead_letter` with their stored `payloads`, interval 0 and the
    default requeue limit (a job already queued there under its id is kept). Returns the
    offsets in `jobs` of those Redis refused."""
    parts = (yield from type_partitions(s, (dead_letter,), create=True))[dead_letter]
    now = s.clock()
    head = (wake_channel(s, dead_letter), s.job_expire_interval, now)
    groups: Dict[int, List[int]] = {}
    ids = []
    for k, job in enumerate(jobs):
        queue_id, job_id = (job.queue_id, job.job_id) if isinstance(job, Job) else (job[1], job[2])
        ids.append((queue_id, job_id))
        groups.setdefault(partition_of(queue_id, parts.count), []).append(k)
    calls, positions = [], []
    for p, indexes in groups.items():
        for start in range(0, len(indexes), chunk_size):
            part = indexes[start : start + chunk_size]
            args: List[Any] = list(head)
            for k in part:
                args += [dead_letter, ids[k][0], ids[k][1], payloads[k], 0, s.default_job_requeue_limit]
            calls.append(partition_call(s, "enqueue", parts, p, now, _core.core.pack_args(args), len(args)))
            positions.append(part)
    replies = yield from run_calls(s, calls)
    refused: Set[int] = set()
    for call, reply, part in zip(calls, replies, positions):
        if isinstance(reply, ResponseError):
            refused.update(part)
        else:
            _mark_head(s, call, reply[0])
    return refused
