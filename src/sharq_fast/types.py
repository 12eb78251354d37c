"""The typed values of sharq_fast's API."""

import enum
from typing import Any, Dict, List, Optional

import msgspec


class Job(msgspec.Struct):
    """A dequeued job. Finish it (``Client.finish_many``, ``Client.finish``) before its lease
    ends at ``expires_at`` (ms epoch; dequeue time + job_expire_interval), or extend it.

    ``expires_at`` is the job's score in the active set when it was dequeued: finish_many,
    extend and release act on a Job only while that is still its lease, never on a later
    delivery of the same job to another consumer. It is 0 for jobs that are not active
    (the discarded jobs of requeue): such a Job holds no lease, so finish_many answers
    False for it (a (queue_type, queue_id, job_id) tuple finishes by ids), and extend and
    release refuse it."""

    queue_type: str
    queue_id: str
    job_id: str
    payload: Any
    requeues_remaining: int
    expires_at: int = 0


class JobRequest(msgspec.Struct, kw_only=True):
    """One job for ``Client.enqueue_many`` (plain dicts with these keys work too)."""

    queue_id: str
    job_id: str
    payload: Any
    interval: int
    queue_type: str = "default"
    requeue_limit: Optional[int] = None


class UndecodablePayload(bytes):
    """The stored bytes of a payload that is not valid MessagePack.

    Delivered as the job's payload instead of failing the dequeue (which has already moved
    the job to the active set): check with ``isinstance(job.payload, UndecodablePayload)``.
    """


class EnqueueResult(msgspec.Struct):
    """What ``enqueue_many`` did: ``enqueued`` jobs, and the input positions of the jobs
    refused because a job with the same id is already queued or active in that queue.
    With ``replicas=``, ``unconfirmed`` lists the input positions of the jobs whose round
    WAIT did not confirm on that many replicas (only ever non-empty in the ``result`` of
    the ReplicationError that enqueue_many then raises)."""

    enqueued: int
    duplicates: List[int] = []
    unconfirmed: List[int] = []


class RequeueResult(msgspec.Struct):
    """What ``requeue`` did: how many expired jobs went back to their queue, and the jobs
    discarded because their requeue limit ran out (payloads included, for inspection)."""

    requeued: int = 0
    discarded: List[Job] = []


class FailOutcome(str, enum.Enum):
    """What ``fail_many`` did with one job."""

    #: Back in its queue (at its front now, or after the backoff), one requeue counted.
    RETRIED = "retried"
    #: Out of requeues: the job, its payload and its requeue count were deleted.
    DISCARDED = "discarded"
    #: Out of requeues: moved to the dead-letter queue type (same queue_id, job_id, payload).
    DEAD_LETTERED = "dead_lettered"
    #: The caller's lease was lost (finished, requeued or dequeued again): nothing changed.
    LOST = "lost"


class GlobalMetrics(msgspec.Struct):
    """Queue types in use and the global per-minute counts, newest minute first."""

    queue_types: List[str]
    enqueue_counts: Dict[int, int]
    dequeue_counts: Dict[int, int]


class QueueTypeMetrics(msgspec.Struct):
    """The queue ids of one queue type: ready ones and those with active jobs."""

    queue_ids: List[str]


class QueueMetrics(msgspec.Struct):
    """Per-minute counts of one queue, newest minute first, and its length."""

    enqueue_counts: Dict[int, int]
    dequeue_counts: Dict[int, int]
    queue_length: int
