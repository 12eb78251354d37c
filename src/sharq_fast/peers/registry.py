"""The peers: how each one's environment is built, its driver, and its settings.

Versions are pinned to the current release when the suite was written, so that a rerun
measures the same code; bump a pin (and rerun the tests) to measure a newer release.
Every Python peer also gets ``hiredis`` (redis-py's C reply parser, which redis-py uses
when installed and sharq_fast's ``redis[hiredis]`` dependency brings), so no peer is
slowed by a parser the others do not use.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

#: The workloads, in report order.
WORKLOADS: Tuple[str, ...] = ("enqueue", "drain", "drain_io", "latency", "rate")

WORKLOAD_TITLES: Dict[str, str] = {
    "enqueue": "bulk enqueue",
    "drain": "drain, no-op handler",
    "drain_io": "drain, 1 ms I/O handler",
    "latency": "end-to-end latency",
    "rate": "SharQ case: 10,000 rate-limited tenants",
}

NO_RATE_LIMITER = "no rate limiter"


@dataclass(frozen=True)
class Peer:
    """One queue system of the comparison."""

    name: str
    #: "self" (sharq_fast, this environment), "sharq" (compare's sharq 1.3.0 virtualenv),
    #: "python" (a virtualenv of its own) or "node" (a Node project of its own).
    kind: str
    driver: str
    #: pip requirements (python) or npm packages (node); the first one is the peer itself.
    requirements: Tuple[str, ...] = ()
    #: the module that must import for the environment to count as working (python).
    module: str = ""
    #: concurrency per workload (threads, async tasks or jobs in flight, in ONE process).
    concurrency: Dict[str, int] = field(default_factory=dict)
    #: workload -> why it is not run.
    unsupported: Dict[str, str] = field(default_factory=dict)

    @property
    def version_spec(self) -> str:
        """The peer's pinned version, for the cache folder's name."""
        if not self.requirements:
            return "local"
        first = self.requirements[0]
        if "==" in first:
            return first.split("==", 1)[1]
        if "@" in first[1:]:  # npm: name@version (a scoped name starts with @)
            return first.rsplit("@", 1)[1]
        return "latest"


def _c(drain: int, drain_io: int, latency: int = 0, rate: int = 0) -> Dict[str, int]:
    return {"enqueue": 1, "drain": drain, "drain_io": drain_io, "latency": latency or drain, "rate": rate or drain}


PEERS: Dict[str, Peer] = {
    p.name: p
    for p in [
        Peer("sharq_fast", "self", "peer_sharq_fast.py", concurrency=_c(1, 32)),
        Peer("sharq", "sharq", "peer_sharq.py", ("sharq==1.3.0",), "sharq", concurrency=_c(1, 32)),
        Peer(
            "bullmq", "node", "peer_bullmq.cjs", ("bullmq@6.7.0", "ioredis@5.11.1"), concurrency=_c(50, 100),
            unsupported={"rate": "per-group rate limits are BullMQ Pro only (the open-source limiter is per queue)"},
        ),
        Peer(
            "rq", "python", "peer_rq.py", ("rq==3.0.0", "hiredis"), "rq", concurrency=_c(1, 1),
            unsupported={"rate": "RQ's RateLimit caps concurrency per key, not starts per interval"},
        ),
        Peer("arq", "python", "peer_arq.py", ("arq==0.28.0", "hiredis"), "arq", concurrency=_c(10, 100),
             unsupported={"rate": NO_RATE_LIMITER}),
        # saq 0.26.4 imports typing_extensions without declaring it (it does not import without it).
        Peer("saq", "python", "peer_saq.py", ("saq[redis]==0.26.4", "typing_extensions", "hiredis"), "saq",
             concurrency=_c(10, 100), unsupported={"rate": NO_RATE_LIMITER}),
        Peer("dramatiq", "python", "peer_dramatiq.py", ("dramatiq[redis]==2.2.1", "hiredis"), "dramatiq",
             concurrency=_c(8, 32)),
        Peer(
            "celery", "python", "peer_celery.py", ("celery[redis]==5.7.0", "hiredis"), "celery", concurrency=_c(8, 32),
            unsupported={"rate": "Celery's rate_limit is per task type and worker, not per key"},
        ),
        Peer("huey", "python", "peer_huey.py", ("huey==3.5.4", "redis", "hiredis"), "huey", concurrency=_c(8, 32)),
        Peer("taskiq", "python", "peer_taskiq.py", ("taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis"), "taskiq_redis",
             concurrency=_c(100, 100), unsupported={"rate": NO_RATE_LIMITER}),
    ]
}

#: The order of ``--peers`` with no list: every peer (sharq_fast always runs: it is the subject).
ALL_PEERS: Tuple[str, ...] = tuple(PEERS)


def select(names: List[str]) -> List[Peer]:
    """sharq_fast plus the named peers, in registry order. Raises KeyError for an unknown name."""
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise KeyError(", ".join(unknown))
    wanted = set(names) | {"sharq_fast"}
    return [p for p in PEERS.values() if p.name in wanted]
