"""The job operations, written once: what each sends to Redis and how its replies become
its result. No I/O here: each operation is a generator of requests (``_rounds``) that a
transport drives, the same code on every transport.

Queue-level operations (requeue, metrics, clear_queue, ...) are in ``_ops_queues``.
"""

import time
from itertools import islice
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from redis.exceptions import ResponseError

from . import _constants as C
from . import _core
from . import _replication as replication
from ._rounds import Collect, Draw, Op, Send, Wait, Watch
from ._settings import Settings, positive_ms, seconds
from .exceptions import BadArgumentException, BatchError, OutcomeUnknownError, ReplicationError
from .types import EnqueueResult, FailOutcome, Job

# -- calls ------------------------------------------------------------------------------


def replied_call(s: Settings, script: str, keys: Sequence[Any], body: bytes, argc: int) -> Tuple[bytes, int]:
    """The RESP of one call of a state-changing script (reply cache first in KEYS, token
    and acknowledgements last in ARGV), and its token."""
    token, tail, tail_argc = s.tokens.tail()
    head = _core.core.evalsha_head(s.sha[script], (f"{s.tokens.base}{token}", *keys), argc + tail_argc)
    return head + body + tail, token


def prefix_key(s: Settings) -> str:
    """How scripts are given the key prefix P: as the key name "P:" (every key a script
    declares is then under P:*, as an ACL user limited to ~P:* needs; lua/_replies.lua)."""
    return f"{s.key_prefix}:"


def replied_evalsha(s: Settings, script: str, keys: Sequence[Any], args: Sequence[Any]) -> Tuple[bytes, int]:
    """replied_call for a script with a few plain arguments."""
    return replied_call(s, script, keys, _core.core.pack_args(args), len(args))


def checked(reply: Any) -> Any:
    """`reply`, or raise it if it is a Redis error."""
    if isinstance(reply, ResponseError):
        raise reply
    return reply


def queue_type_arg(queue_type: Any) -> str:
    """A queue type that is valid and not one of SharQ's own key names."""
    _core.core.check_identifier(queue_type, "queue_type")
    if queue_type in C.RESERVED_QUEUE_TYPES:
        raise _core.core.bad_argument("queue_type", -1, f"{queue_type!r} {C.RESERVED_MESSAGE}")
    return queue_type


def queue_args(queue_type: Any, queue_id: Any) -> None:
    """Check a queue's identifiers as SharQ does (queue_id first), and that its keys are not
    SharQ's own."""
    _core.core.check_identifier(queue_id, "queue_id")
    _core.core.check_identifier(queue_type, "queue_type")
    _core.core.check_not_reserved(queue_type, queue_id)


def wake_channel(s: Settings, queue_type: str) -> str:
    """The channel on which scripts announce queues of `queue_type` that became ready."""
    return f"{s.key_prefix}:.wake:{queue_type}"


def int_arg(value: Any, name: str, low: int, high: int) -> int:
    """`value` if it is an int from `low` to `high` (not a bool), else BadArgumentException."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadArgumentException(f"`{name}` must be an int from {low} to {high}.", field=name)
    return value


def check_batching(chunk_size: Any, pipeline_depth: Any) -> int:
    """The chunk size, after checking it and the pipeline depth."""
    int_arg(pipeline_depth, "pipeline_depth", 1, C.MAX_PIPELINE_DEPTH)
    return int_arg(chunk_size, "chunk_size", 1, C.MAX_CHUNK_SIZE)


# -- enqueue ----------------------------------------------------------------------------


def enqueue(s: Settings, job: Any) -> Op[bool]:
    """Enqueue one job (a dict of enqueue's arguments): True, or False for a duplicate."""
    bodies, _ = _core.core.enqueue_chunks(s.clock(), (job,), s.default_job_requeue_limit, -1, 1)
    command, token = replied_call(s, "enqueue", (prefix_key(s),), bodies[0], 7)
    replies, reached = replication.split((yield replication.write_round(s, (command,), s.replicas)), s.replicas)
    s.tokens.read((token,))
    queued = not checked(replies[0])
    if not replication.confirmed(reached, s.replicas):
        raise replication.error(s, "enqueue", [0], queued, s.replicas, reached,
                                "enqueue it again (if it survived, enqueue answers False: a duplicate)")
    return queued


def enqueue_many(
    s: Settings, jobs: Iterable[Any], chunk_size: int, pipeline_depth: int, replicas: Any = None
) -> Op[EnqueueResult]:
    """Enqueue jobs from any iterable (or async iterable) in rounds of chunk_size x
    pipeline_depth jobs, packing the next round while Redis runs the current one. The
    iterable is drawn only while no reply is pending: it may itself use the client.
    With replicas, each round ends with a WAIT; a round it does not confirm (after the
    transport sent it again for retry_for) stops the call with ReplicationError."""
    chunk_size = check_batching(chunk_size, pipeline_depth)
    replicas = replication.replicas_for(s, replicas)
    round_size = chunk_size * pipeline_depth
    source = jobs.__aiter__() if hasattr(jobs, "__aiter__") else iter(jobs)
    result = EnqueueResult(enqueued=0, duplicates=[])
    start = 0
    batch = yield Draw(source, round_size)
    in_flight = None  # (handle, positions, tokens, start) of the round Redis works on
    try:
        while batch:
            commands, positions, tokens, error = _pack_round(s, batch, start, chunk_size)
            if in_flight is not None:
                yield from _land_round(s, in_flight, result, replicas)
                in_flight = None
            # Drawn while nothing is in flight: the iterable may itself use this client.
            following = (yield Draw(source, round_size)) if len(batch) == round_size else []
            if commands:
                in_flight = ((yield Send(replication.write_round(s, commands, replicas))), positions, tokens, start)
            if error is not None:
                if in_flight is not None:
                    yield from _land_round(s, in_flight, result, replicas)
                    in_flight = None
                error.enqueued = result.enqueued
                raise error
            start += len(batch)
            batch = following
        if in_flight is not None:
            yield from _land_round(s, in_flight, result, replicas)
        return result
    except ReplicationError as exc:
        exc.resume_from = start  # nothing from here on was sent
        raise
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


def _pack_round(s: Settings, batch: List[Any], start: int, chunk_size: int) -> Any:
    """(commands, positions, tokens, error) of one round. A bad job's error comes with the
    chunks before its chunk, which are still to be sent."""
    now, limit = s.clock(), s.default_job_requeue_limit
    error = None
    try:
        bodies, positions = _core.core.enqueue_chunks(now, batch, limit, start, chunk_size)
    except BadArgumentException as exc:
        error = exc
        valid = ((exc.index or start) - start) // chunk_size * chunk_size
        bodies, positions = _core.core.enqueue_chunks(now, batch[:valid], limit, start, chunk_size)
    commands, tokens = [], []
    for body, part in zip(bodies, positions):
        command, token = replied_call(s, "enqueue", (prefix_key(s),), body, 1 + 6 * len(part))
        commands.append(command)
        tokens.append(token)
    return commands, positions, tokens, error


def _land_round(s: Settings, in_flight: Any, result: EnqueueResult, replicas: int) -> Op[None]:
    handle, positions, tokens, start = in_flight
    replies, reached = replication.split((yield Collect(handle)), replicas)
    s.tokens.read(tokens)
    refused: List[int] = []
    errors = []
    duplicates = []
    ran: List[int] = []
    for reply, part in zip(replies, positions):
        if isinstance(reply, ResponseError):
            errors.append(reply)
            refused.extend(start + offset for offset in part)
            continue
        result.enqueued += len(part) - len(reply)
        duplicates.extend(start + part[position - 1] for position in reply)
        ran.extend(start + offset for offset in part)
    result.duplicates.extend(sorted(duplicates))
    if errors:
        raise BatchError(
            f"Redis refused {len(refused)} jobs: {errors[0]}; {result.enqueued} jobs were "
            "enqueued (the refused ones are in .refused)",
            done=result.enqueued,
            refused=sorted(refused),
        )
    if not replication.confirmed(reached, replicas):
        result.unconfirmed.extend(sorted(ran))
        raise replication.error(
            s, "enqueue_many", result.unconfirmed, result, replicas, reached,
            f"{result.enqueued} jobs were enqueued (in .result); send the unconfirmed ones again, and those from "
            "input position .resume_from on (jobs that survived are refused as duplicates)",
        )


# -- dequeue ----------------------------------------------------------------------------


def dequeue_many(s: Settings, queue_type: Any, count: Any, timeout: Any) -> Op[List[Job]]:
    """Up to `count` jobs in one round trip: what `count` dequeues at the same instant would
    give. With a timeout (seconds), wait for jobs while none is ready: until the next queue's
    ready time, a wake-up from an enqueue, or wait_poll_interval, whichever comes first."""
    jobs, _ = yield from dequeue_waiting(s, queue_type, count, timeout)
    return jobs


def dequeue_waiting(
    s: Settings, queue_type: Any, count: Any, timeout: Any, with_length: bool = False
) -> Op[Tuple[List[Job], int]]:
    """dequeue_many, and with `with_length` (count 1 only) the length of the job's queue
    right after, from the same script call (sharq-server answers a dequeue with it)."""
    queue_type_arg(queue_type)
    int_arg(count, "count", 1, 1 if with_length else C.MAX_DEQUEUE_COUNT)
    timeout = seconds(timeout, "timeout", allow_none=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = wake_channel(s, queue_type)
    seen = (yield Watch(channel)) if timeout else 0
    while True:
        now = s.clock()
        jobs, next_ready, length = yield from _dequeue_round(s, queue_type, count, now, with_length)
        if jobs or deadline is None:
            return jobs, length
        left = deadline - time.monotonic()
        if left <= 0:
            return jobs, length
        pause = min(left, s.wait_poll_interval)
        if next_ready >= 0:
            # A queue is rate-limited until next_ready (or was ready and gave nothing:
            # orphans were dropped; look again soon).
            pause = min(pause, max((next_ready - now) / 1000, 0.001))
        seen = yield Wait(channel, seen, pause)


def _dequeue_round(
    s: Settings, queue_type: str, count: int, now: int, with_length: bool
) -> Op[Tuple[List[Job], int, int]]:
    keys = (prefix_key(s), f"{s.key_prefix}:{queue_type}")  # P:T, the ready set
    extra = (1,) if with_length else ()
    calls = [
        replied_evalsha(
            s, "dequeue", keys, (now, s.job_expire_interval, min(C.MAX_DEQUEUE_PER_CALL, count - done), *extra)
        )
        for done in range(0, count, C.MAX_DEQUEUE_PER_CALL)
    ]
    try:
        replies = yield replication.write_round(s, [command for command, _ in calls], s.replicas)
    except OutcomeUnknownError as exc:
        raise OutcomeUnknownError(
            f"{exc}; dequeue: if Redis ran it, the jobs it took are active and come back "
            "by requeue after job_expire_interval"
        ) from exc
    replies, reached = replication.split(replies, s.replicas)
    s.tokens.read([token for _, token in calls])
    jobs: List[Job] = []
    next_ready = -1
    length = 0
    first = 3 if with_length else 2  # [next ready, lease expiry, (length,) job fields...]
    error = None
    for reply in replies:
        if isinstance(reply, ResponseError):
            error = error or reply
        else:
            next_ready = reply[0]
            if with_length:
                length = reply[2]
            jobs.extend(_core.core.parse_jobs(reply, queue_type, first, reply[1]))
    if jobs and not replication.confirmed(reached, s.replicas):
        raise replication.error(
            s, "dequeue", list(range(len(jobs))), jobs, s.replicas, reached,
            "the jobs (in .result) are active: finish or release them; if a failover loses this dequeue, "
            "they are delivered again",
        )
    if error is not None:
        raise BatchError(
            f"Redis refused a dequeue: {error}; {len(jobs)} jobs were dequeued (in .jobs)",
            done=len(jobs),
            jobs=jobs,
        )
    return jobs, next_ready, length


def dequeue(s: Settings, queue_type: Any, timeout: Any) -> Op[Optional[Job]]:
    """The next job of the ready queue of `queue_type` that is due first, or None."""
    jobs = yield from dequeue_many(s, queue_type, 1, timeout)
    return jobs[0] if jobs else None


# -- finish, extend, release ------------------------------------------------------------


def _job_ref_rounds(
    s: Settings,
    script: str,
    jobs: Sequence[Any],
    chunk_size: int,
    need_lease: bool,
    head_args: Sequence[Any],
    replicas: int = 0,
) -> Op[List[Any]]:
    """Run `script` over `jobs` (validated first: a bad one raises and changes nothing),
    `chunk_size` jobs a call, all in one round trip: one reply value per job. Errors name
    a job's position in `jobs`, but for a single job given as arguments (chunk_size 0).
    With replicas, the round ends with a WAIT: unconfirmed, ReplicationError (its result:
    the reply values)."""
    single = chunk_size == 0
    chunk_size = chunk_size or 1
    starts = range(0, len(jobs), chunk_size)
    head = _core.core.pack_args(head_args)
    calls = []
    for start in starts:
        body = _core.core.pack_job_refs(jobs[start : start + chunk_size], -1 if single else start, need_lease)
        size = min(chunk_size, len(jobs) - start)
        calls.append(replied_call(s, script, (prefix_key(s),), head + body, len(head_args) + 4 * size))
    if not calls:
        return []
    try:
        replies = yield replication.write_round(s, [command for command, _ in calls], replicas)
    except OutcomeUnknownError as exc:
        raise OutcomeUnknownError(
            f"{exc}; {script}: the outcome of all {len(jobs)} jobs is unknown (in .unknown); "
            f"send them again",
            unknown=list(range(len(jobs))),
        ) from exc
    replies, reached = replication.split(replies, replicas)
    s.tokens.read([token for _, token in calls])
    results: List[Any] = []
    refused: List[int] = []
    errors = []
    for start, reply in zip(starts, replies):
        if isinstance(reply, ResponseError):
            errors.append(reply)
            size = min(chunk_size, len(jobs) - start)
            refused.extend(range(start, start + size))
            results.extend([0] * size)
        else:
            results.extend(reply)
    if errors:
        raise BatchError(
            f"Redis refused to {script} {len(refused)} jobs: {errors[0]} (they are in .refused)",
            done=sum(1 for value in results if value),
            refused=refused,
        )
    if not replication.confirmed(reached, replicas):
        raise replication.error(
            s, script, list(range(len(jobs))), results, replicas, reached,
            f"send them again (a {script} that survived answers False the second time)",
        )
    return results


def finish(s: Settings, queue_type: Any, queue_id: Any, job_id: Any) -> Op[bool]:
    """Finish one active job by its ids (SharQ's finish)."""
    try:
        results = yield from _job_ref_rounds(
            s, "finish", ((queue_type, queue_id, job_id),), 0, False, (s.clock(), s.job_expire_interval), s.replicas
        )
    except ReplicationError as exc:
        exc.result = exc.result[0] == 1
        raise
    return results[0] == 1


def finish_many(s: Settings, jobs: Iterable[Any], chunk_size: int, replicas: Any = None) -> Op[List[bool]]:
    """Finish jobs: a Job only while its lease is the caller's, an ids tuple if active."""
    chunk_size = check_batching(chunk_size, 1)
    replicas = replication.replicas_for(s, replicas)
    try:
        results = yield from _job_ref_rounds(
            s, "finish", list(jobs), chunk_size, False, (s.clock(), s.job_expire_interval), replicas
        )
    except ReplicationError as exc:
        exc.result = [value == 1 for value in exc.result]
        raise
    return [value == 1 for value in results]


def extend_args(jobs: Iterable[Any], ms: Any) -> List[Job]:
    """extend_many's jobs as a list, checked (Job objects only: their lease is updated) with ms."""
    items = list(jobs)
    for index, job in enumerate(items):
        if not isinstance(job, Job):
            raise BadArgumentException(
                f"job {index}: extend takes the Job objects that dequeue gave (their lease is "
                f"updated), not {type(job).__name__}",
                index=index,
            )
    positive_ms(ms, "ms")
    return items


def extend_many(s: Settings, jobs: Iterable[Any], ms: Any, chunk_size: int) -> Op[List[bool]]:
    """Move the lease of each Job still held to now + ms; updates the Jobs' expires_at."""
    items = extend_args(jobs, ms)
    chunk_size = check_batching(chunk_size, 1)
    expiries = yield from _job_ref_rounds(s, "extend", items, chunk_size, True, (s.clock(), ms))
    for job, expiry in zip(items, expiries):
        if expiry:
            job.expires_at = expiry
    return [bool(expiry) for expiry in expiries]


def release_many(s: Settings, jobs: Iterable[Any], chunk_size: int) -> Op[List[bool]]:
    """Put dequeued jobs still held back at the front of their queues, uncounted."""
    chunk_size = check_batching(chunk_size, 1)
    results = yield from _job_ref_rounds(s, "release", list(jobs), chunk_size, True, (s.clock(),))
    return [value == 1 for value in results]


#: fail.lua's reply value per job -> its outcome.
FAIL_OUTCOMES = (FailOutcome.LOST, FailOutcome.RETRIED, FailOutcome.DISCARDED, FailOutcome.DEAD_LETTERED)


def fail_args(jobs: Sequence[Any], backoff_ms: Any, dead_letter: Any) -> str:
    """Check fail_many's own arguments (the jobs are checked as they are packed); the
    dead-letter queue type as the scripts take it ('' for none)."""
    int_arg(backoff_ms, "backoff_ms", 0, C.MAX_INTEGER)
    if dead_letter is None:
        return ""
    _core.core.check_identifier(dead_letter, "dead_letter")
    if dead_letter in C.RESERVED_QUEUE_TYPES:
        raise _core.core.bad_argument("dead_letter", -1, f"{dead_letter!r} {C.RESERVED_MESSAGE}")
    for index, job in enumerate(jobs):
        ids = (job.queue_type, job.queue_id) if isinstance(job, Job) else job[:2] if isinstance(job, tuple) else ()
        if len(ids) < 2:
            continue  # not a job reference: refused with its position when it is packed
        queue_type, queue_id = ids
        if isinstance(queue_id, str) and (dead_letter, queue_id) in C.RESERVED_QUEUE_TYPE_IDS:
            raise _core.core.bad_argument(
                "dead_letter", index, f"{dead_letter!r} with queue_id {queue_id!r} {C.RESERVED_MESSAGE}"
            )
        if queue_type == dead_letter:
            # Its jobs would go round forever, with a fresh requeue limit each time.
            raise _core.core.bad_argument(
                "dead_letter", index, f"{dead_letter!r} is the job's own queue type: give jobs that ran out "
                "of requeues a queue type of their own."
            )
    return dead_letter


def fail_many(
    s: Settings, jobs: Iterable[Any], backoff_ms: Any, dead_letter: Any, chunk_size: int
) -> Op[List[FailOutcome]]:
    """Fail jobs still held: retried (now, or after the backoff), discarded or moved to the
    dead-letter queue type when out of requeues; see lua/fail.lua."""
    chunk_size = check_batching(chunk_size, 1)
    items = list(jobs)
    dead_letter = fail_args(items, backoff_ms, dead_letter)
    head = (s.clock(), backoff_ms, dead_letter, s.default_job_requeue_limit, s.job_expire_interval)
    results = yield from _job_ref_rounds(s, "fail", items, chunk_size, True, head)
    return [FAIL_OUTCOMES[value] for value in results]


def draw(source: Any, count: int) -> List[Any]:
    """Up to `count` items of a sync iterator (Draw on a sync transport)."""
    if hasattr(source, "__anext__"):
        raise BadArgumentException(
            "this client takes a sync iterable of jobs; use AsyncClient for an async iterable"
        )
    return list(islice(source, count))
