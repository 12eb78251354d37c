"""``sharq-fast redrive DEAD_LETTER_TYPE --to QUEUE_TYPE --interval MS``: move the jobs of a
dead-letter queue type (where ``Consumer(dead_letter=...)`` / ``fail_many`` put jobs out of
retries) back into a queue type, with the same queue ids, job ids and payloads.

Each round: ``dequeue_many`` from the dead-letter type (the jobs are leased, not gone),
``enqueue_many`` into the target, then ``finish_many`` of the dequeued jobs. A crash between
the last two leaves the jobs in both places (the dead-letter copies come back after their
lease): run it again; a job still queued or active in the target is then not enqueued twice
(enqueue refuses a known job id), only its dead-letter copy is dropped.
"""

from typing import Any, Callable, Dict, Optional

ROUND = 1000


def redrive(client: Any, dead_letter: str, to: str, interval: int, *, requeue_limit: Optional[int] = None,
            limit: Optional[int] = None, progress: Optional[Callable[[Dict[str, int]], None]] = None) -> Dict[str, int]:
    """Move up to `limit` jobs (default: all) from queue type `dead_letter` to `to`;
    enqueue gives their queues `interval` ms (as any enqueue) and `requeue_limit` (default:
    the client's). Returns counts: moved, already_there (a job with that id was queued or
    active in `to`: kept, the dead-letter copy dropped), not_finished (lease lost meanwhile:
    the dead-letter copy stays and comes back)."""
    from ._constants import RESERVED_QUEUE_TYPES
    from ._core_py import check_identifier, check_interval
    from .exceptions import BadArgumentException

    for field, name in (("dead_letter", dead_letter), ("to", to)):
        check_identifier(name, field)
        if name in RESERVED_QUEUE_TYPES:
            raise BadArgumentException(f"`{field}` {name!r} is reserved: its keys would be SharQ's own keys", field=field)
    if dead_letter == to:
        raise BadArgumentException("`to` must be another queue type than the dead-letter one", field="to")
    check_interval(interval)
    counts = {"moved": 0, "already_there": 0, "not_finished": 0}
    while limit is None or counts["moved"] + counts["already_there"] < limit:
        want = ROUND if limit is None else min(ROUND, limit - counts["moved"] - counts["already_there"])
        jobs = client.dequeue_many(dead_letter, want)
        if not jobs:
            break
        result = client.enqueue_many([
            {"queue_type": to, "queue_id": job.queue_id, "job_id": job.job_id, "payload": job.payload,
             "interval": interval, "requeue_limit": requeue_limit} for job in jobs
        ])
        finished = client.finish_many(jobs)
        counts["already_there"] += len(result.duplicates)
        counts["moved"] += result.enqueued
        counts["not_finished"] += sum(1 for ok in finished if not ok)
        if progress is not None:
            progress(counts)
    return counts
