"""``SharQ``: a drop-in for ``sharq.SharQ`` 1.3.0 (same constructor, methods, argument
names, defaults, return dicts and exceptions), running on sharq_fast's Client."""

from typing import Any, Dict, Optional

import msgspec
import redis

from ._connect import redis_for_config
from .client import Client
from .config import read_config

_DUPLICATE = "a job with this job_id is already queued or active in this queue"


class SharQ:
    """Construct from a SharQ config file path, as ``sharq.SharQ(config_path)``."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._load_config()
        self._initialize()

    def _load_config(self) -> None:
        self._config = read_config(self.config_path)

    def _initialize(self) -> None:
        config = self._config
        self._key_prefix = config.key_prefix
        self._job_expire_interval = config.job_expire_interval
        self._default_job_requeue_limit = config.default_job_requeue_limit
        # a redis.StrictRedis (through Sentinel if set), or a cluster client (clustered)
        self._r = redis_for_config(config, asyncio=False)
        self._client = Client(
            self._r,
            key_prefix=config.key_prefix,
            job_expire_interval=config.job_expire_interval,
            job_requeue_interval=config.job_requeue_interval,
            default_job_requeue_limit=config.default_job_requeue_limit,
        )

    def redis_client(self) -> redis.Redis:
        """The redis-py client SharQ uses."""
        return self._r

    def reload_config(self, config_path: Optional[str] = None) -> None:
        """Re-read the config file (a new one if given). As in SharQ, this only reads it;
        the connection and settings stay until a new SharQ is made."""
        if config_path:
            self.config_path = config_path
        self._load_config()

    def reload_lua_scripts(self) -> None:
        """Load the Lua scripts into Redis again."""
        self._client.load_scripts()

    def enqueue(
        self,
        payload: Any,
        interval: int,
        job_id: str,
        queue_id: str,
        queue_type: str = "default",
        requeue_limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Enqueue a job: ``{'status': 'queued'}``; a job_id already queued or active in
        this queue is refused with ``{'status': 'failure', 'message': ...}``."""
        queued = self._client.enqueue(
            queue_type=queue_type,
            queue_id=queue_id,
            job_id=job_id,
            payload=payload,
            interval=interval,
            requeue_limit=requeue_limit,
        )
        if queued:
            return {"status": "queued"}
        return {"status": "failure", "message": _DUPLICATE}

    def dequeue(self, queue_type: str = "default") -> Dict[str, Any]:
        """Dequeue a job: status success with queue_id, job_id, payload and
        requeues_remaining, or ``{'status': 'failure'}`` when none is ready."""
        job = self._client.dequeue(queue_type)
        if job is None:
            return {"status": "failure"}
        return {
            "status": "success",
            "queue_id": job.queue_id,
            "job_id": job.job_id,
            "payload": job.payload,
            "requeues_remaining": job.requeues_remaining,
        }

    def finish(self, job_id: str, queue_id: str, queue_type: str = "default") -> Dict[str, str]:
        """Finish a dequeued job: status success, or failure when it is not active."""
        if self._client.finish(queue_type, queue_id, job_id):
            return {"status": "success"}
        return {"status": "failure"}

    def interval(self, interval: int, queue_id: str, queue_type: str = "default") -> Dict[str, str]:
        """Change a queue's interval: status success, or failure for an unknown queue."""
        if self._client.interval(queue_type, queue_id, interval):
            return {"status": "success"}
        return {"status": "failure"}

    def requeue(self) -> None:
        """Requeue expired jobs and discard those out of requeues (returns None, as SharQ)."""
        self._client.requeue()

    def metrics(self, queue_type: Optional[str] = None, queue_id: Optional[str] = None) -> Dict[str, Any]:
        """SharQ's metrics dicts: global, per queue type, or per queue. As SharQ, an
        argument that is not None is validated (queue_id first): '' is invalid, not absent."""
        result = self._client.metrics(queue_type=queue_type, queue_id=queue_id)
        response: Dict[str, Any] = {"status": "success", **msgspec.structs.asdict(result)}
        for counts in ("enqueue_counts", "dequeue_counts"):
            if counts in response:  # SharQ keys them by the minute as a str
                response[counts] = {str(minute): n for minute, n in response[counts].items()}
        return response

    def deep_status(self) -> bool:
        """Write SharQ's deep status key; raises if Redis is down."""
        return self._client.deep_status()

    def clear_queue(
        self, queue_type: Optional[str] = None, queue_id: Optional[str] = None, purge_all: bool = False
    ) -> Dict[str, str]:
        """Clear a queue (and, with purge_all, its payloads and interval). The Client
        validates queue_id, then queue_type, as SharQ (None is invalid)."""
        if not self._client.clear_queue(queue_type, queue_id, purge_all=purge_all):
            return {"status": "Failure", "message": "No queued calls found"}
        if purge_all:
            return {
                "status": "Success",
                "message": "Successfully removed all queued calls and purged related resources",
            }
        return {"status": "Success", "message": "Successfully removed all queued calls"}

    def get_queue_length(self, queue_type: str, queue_id: str) -> int:
        """LLEN of a queue's job list."""
        return self._client.queue_length(queue_type, queue_id)
