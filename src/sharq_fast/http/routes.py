"""sharq-server's routes: same paths, request bodies, JSON answers and status codes.

Where sharq-server (GitHub master, Python 3) answers bad input with a 500 (its error
paths read ``e.message``, which Python 3 exceptions lack), these answer 400 with the
message its Python 2 version gave or documented. Every difference is listed in
docs/http.md and pinned by tests/test_http_golden.py against recorded answers.
"""

from typing import TYPE_CHECKING, Any, Dict, Sequence, Tuple

from . import _wire as w

if TYPE_CHECKING:
    from .server import SharqHTTP

Answer = Tuple[int, bytes]

#: What enqueue's JSON body may hold (queue_type and queue_id are taken from the path,
#: as sharq-server's ``request_data.update(...)`` does).
ENQUEUE_FIELDS = frozenset(("payload", "interval", "job_id", "requeue_limit", "queue_type", "queue_id"))
CLEAR_FIELDS = frozenset(("purge_all", "queue_type", "queue_id"))
DUPLICATE = "a job with this job_id is already queued or active in this queue"
CLEARED = "Successfully removed all queued calls"
PURGED = "Successfully removed all queued calls and purged related resources"
NOT_CLEARED = "No queued calls found"


def _unexpected(function: str, data: Dict[str, Any], allowed: frozenset) -> None:
    for key in data:
        if key not in allowed:
            # The words of the TypeError sharq-server's Python 2 version answered with.
            raise w.bad_request(f"{function}() got an unexpected keyword argument '{key}'")


def _mandatory(data: Dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in data:
            raise w.bad_request(f"`{name}` is a mandatory parameter.")


def duplicate_error() -> w.HTTPError:
    """409: sharq_fast keeps the first job where SharQ overwrote it (docs/http.md)."""
    return w.HTTPError(409, DUPLICATE)


def counts(by_minute: Dict[int, int]) -> Dict[str, int]:
    """SharQ's per-minute counts keyed by the minute as a str, oldest first (as jsonify
    sorts them)."""
    return {str(minute): by_minute[minute] for minute in sorted(by_minute)}


class SharqRoutes:
    """The handlers of sharq-server's routes; each returns (status, JSON body)."""

    def __init__(self, app: "SharqHTTP") -> None:
        self.app = app

    async def index(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """GET /"""
        return 200, w.INDEX

    async def enqueue(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /enqueue/<queue_type>/<queue_id>/ with {job_id, payload, interval[,
        requeue_limit]}: 201. A payload with ``max_queued_length`` is refused with 429
        when the queue already holds that many jobs (GitHub sharq-server's rule)."""
        queue_type, queue_id = params
        data = w.json_object(body)
        _unexpected("enqueue", data, ENQUEUE_FIELDS)
        _mandatory(data, "job_id", "payload", "interval")
        payload = data["payload"]
        client = self.app.client
        limit = payload.get("max_queued_length") if isinstance(payload, dict) else None
        length = None
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, float)):
                raise w.bad_request("`max_queued_length` has an invalid value.")
            # Not atomic with the enqueue (nor was it in sharq-server): concurrent
            # enqueues may overshoot the limit by their number.
            length = await client.queue_length(queue_type, queue_id)
            if length >= limit:
                raise w.HTTPError(429, "Max queue length reached", current_queue_length=length)
        queued = await client.enqueue(
            queue_type=queue_type, queue_id=queue_id, job_id=data["job_id"], payload=payload,
            interval=data["interval"], requeue_limit=data.get("requeue_limit"),
        )
        if not queued:
            self.app.stats.jobs["duplicate"] += 1
            raise duplicate_error()
        self.app.stats.jobs["enqueued"] += 1
        if length is None:
            return 201, w.QUEUED
        return 201, w.dumps({"current_queue_length": length, "status": "queued"})

    async def dequeue(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """GET /dequeue/ and /dequeue/<queue_type>/ [?wait=SECONDS]: 200 with the job and
        the length of its queue after the dequeue (told by the same script call), 404 when
        no queue is ready."""
        queue_type = params[0] if params else "default"
        wait = self.app.wait_param(query)
        job, length = await self.app.dequeue_waiting(queue_type, wait)
        if job is None:
            return 404, w.FAILURE
        self.app.stats.jobs["dequeued"] += 1
        return 200, w.dumps(
            {
                "current_queue_length": length, "job_id": job.job_id, "payload": job.payload,
                "queue_id": job.queue_id, "requeues_remaining": job.requeues_remaining, "status": "success",
            }
        )

    async def finish(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /finish/<queue_type>/<queue_id>/<job_id>/: 200, or 404 when not active."""
        queue_type, queue_id, job_id = params
        if await self.app.client.finish(queue_type, queue_id, job_id):
            self.app.stats.jobs["finished"] += 1
            return 200, w.SUCCESS
        return 404, w.FAILURE

    async def interval(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /interval/<queue_type>/<queue_id>/ with {interval}: 200, or 404 for a
        queue without an interval. Other keys are ignored, as sharq-server does."""
        queue_type, queue_id = params
        data = w.json_object(body)
        _mandatory(data, "interval")
        if await self.app.client.interval(queue_type, queue_id, data["interval"]):
            return 200, w.SUCCESS
        return 404, w.FAILURE

    async def metrics(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """GET /metrics/, /metrics/<queue_type>/, /metrics/<queue_type>/<queue_id>/."""
        queue_type = params[0] if params else None
        queue_id = params[1] if len(params) > 1 else None
        result: Any = await self.app.client.metrics(queue_type, queue_id)
        if queue_type is None:
            return 200, w.dumps(
                {
                    "dequeue_counts": counts(result.dequeue_counts), "enqueue_counts": counts(result.enqueue_counts),
                    "queue_types": list(result.queue_types), "status": "success",
                }
            )
        if queue_id is None:
            return 200, w.dumps({"queue_ids": list(result.queue_ids), "status": "success"})
        return 200, w.dumps(
            {
                "dequeue_counts": counts(result.dequeue_counts), "enqueue_counts": counts(result.enqueue_counts),
                "queue_length": result.queue_length, "status": "success",
            }
        )

    async def clear_queue(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """DELETE /deletequeue/<queue_type>/<queue_id>/ [with {purge_all}]: 200 with
        status Success or Failure (capitalised, both 200, as sharq-server answers)."""
        queue_type, queue_id = params
        data = w.json_object(body, empty_ok=True)  # sharq-server 500s on an empty body
        _unexpected("clear_queue", data, CLEAR_FIELDS)
        purge_all = data.get("purge_all", False)
        if not isinstance(purge_all, bool):
            raise w.bad_request("`purge_all` must be true or false.")
        if not await self.app.client.clear_queue(queue_type, queue_id, purge_all=purge_all):
            return 200, w.dumps({"message": NOT_CLEARED, "status": "Failure"})
        return 200, w.dumps({"message": PURGED if purge_all else CLEARED, "status": "Success"})

    async def deep_status(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """GET /deepstatus/: 200 when Redis takes a write; 503 (not sharq-server's
        HTML 500) when it does not."""
        if await self.app.client.deep_status():
            return 200, w.SUCCESS
        raise w.HTTPError(503, "Redis did not take the deep status write")
