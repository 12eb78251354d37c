"""The typed values of sharq_fast's API."""

from typing import Any, Dict, List, Optional

import msgspec


class Job(msgspec.Struct):
    """A dequeued job. Finish it with ``Client.finish`` before job_expire_interval ends."""

    queue_type: str
    queue_id: str
    job_id: str
    payload: Any
    requeues_remaining: int


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
    refused because a job with the same id is already queued or active in that queue."""

    enqueued: int
    duplicates: List[int] = []


class RequeueResult(msgspec.Struct):
    """What ``requeue`` did: how many expired jobs went back to their queue, and the jobs
    discarded because their requeue limit ran out (payloads included, for inspection)."""

    requeued: int = 0
    discarded: List[Job] = []


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
