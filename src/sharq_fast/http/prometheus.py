"""``GET /prometheus/``: Prometheus text metrics (exposition format 0.0.4).

Two kinds: counters of this worker process (HTTP requests by route and status, jobs by
event; with several workers, each scrape sees the worker that answered it, so give each
its own port or sum by instance), and SharQ's own per-minute counters read from Redis,
which count every client of the key prefix.
"""

import collections
import os
import time
from typing import TYPE_CHECKING, Dict, List, Tuple

from .. import __version__

if TYPE_CHECKING:
    from .server import SharqHTTP

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
JOB_EVENTS = ("enqueued", "duplicate", "dequeued", "finished", "extended", "released", "failed")


class Stats:
    """This process's counters."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Dict[Tuple[str, int], int] = collections.defaultdict(int)
        self.jobs: Dict[str, int] = {event: 0 for event in JOB_EVENTS}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render(app: "SharqHTTP") -> bytes:
    """The metrics page."""
    stats = app.stats
    lines: List[str] = [
        "# HELP sharq_fast_info sharq_fast version and this worker's pid.",
        "# TYPE sharq_fast_info gauge",
        f'sharq_fast_info{{version="{__version__}",pid="{os.getpid()}"}} 1',
        "# HELP sharq_fast_process_start_time_seconds When this worker started (Unix time).",
        "# TYPE sharq_fast_process_start_time_seconds gauge",
        f"sharq_fast_process_start_time_seconds {stats.started:.3f}",
        "# HELP sharq_fast_http_requests_total HTTP requests answered by this worker, by route and status.",
        "# TYPE sharq_fast_http_requests_total counter",
    ]
    for (route, status), count in sorted(stats.requests.items()):
        lines.append(f'sharq_fast_http_requests_total{{route="{_escape(route)}",code="{status}"}} {count}')
    lines += [
        "# HELP sharq_fast_jobs_total Jobs handled by this worker: enqueued, refused as duplicate, dequeued, "
        "finished, leases extended, released, failed.",
        "# TYPE sharq_fast_jobs_total counter",
    ]
    lines += [f'sharq_fast_jobs_total{{event="{event}"}} {stats.jobs[event]}' for event in JOB_EVENTS]
    try:
        metrics = await app.client.metrics()
    except Exception:
        lines += ["# HELP sharq_redis_up Whether Redis answered the metrics query.", "# TYPE sharq_redis_up gauge", "sharq_redis_up 0"]
        return ("\n".join(lines) + "\n").encode()
    minutes = sorted(metrics.enqueue_counts, reverse=True)  # newest (current, partial) first
    last = minutes[1] if len(minutes) > 1 else minutes[0]
    lines += [
        "# HELP sharq_redis_up Whether Redis answered the metrics query.",
        "# TYPE sharq_redis_up gauge",
        "sharq_redis_up 1",
        "# HELP sharq_queue_types Queue types with ready or active queues (all clients of the key prefix).",
        "# TYPE sharq_queue_types gauge",
        f"sharq_queue_types {len(metrics.queue_types)}",
        "# HELP sharq_enqueues_last_minute Jobs enqueued in the last complete minute (SharQ's counters, all clients).",
        "# TYPE sharq_enqueues_last_minute gauge",
        f"sharq_enqueues_last_minute {metrics.enqueue_counts[last]}",
        "# HELP sharq_dequeues_last_minute Jobs dequeued in the last complete minute (SharQ's counters, all clients).",
        "# TYPE sharq_dequeues_last_minute gauge",
        f"sharq_dequeues_last_minute {metrics.dequeue_counts[last]}",
        "# HELP sharq_enqueues_10m Jobs enqueued in the last ten minutes, the current one included.",
        "# TYPE sharq_enqueues_10m gauge",
        f"sharq_enqueues_10m {sum(metrics.enqueue_counts.values())}",
        "# HELP sharq_dequeues_10m Jobs dequeued in the last ten minutes, the current one included.",
        "# TYPE sharq_dequeues_10m gauge",
        f"sharq_dequeues_10m {sum(metrics.dequeue_counts.values())}",
    ]
    return ("\n".join(lines) + "\n").encode()
