"""``sharq-fast bench`` on a Redis Cluster: server CPU summed over the masters, cleanup on
every master, and the load of each shard (keys, commands and CPU per job).

``sharq-fast bench --cluster`` starts a private single redis-server and a private 3-master
cluster on this machine and runs the workload on both in the same run.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import redis
import redis.cluster

from . import _bench
from .client import Client


def is_cluster(conn: Any) -> bool:
    """True for a redis-py cluster client."""
    return isinstance(conn, redis.cluster.RedisCluster)


def masters(conn: redis.cluster.RedisCluster) -> List[Any]:
    """The cluster's masters, by name."""
    return sorted(conn.get_primaries(), key=lambda node: node.name)


def server_cpu(conn: Any) -> float:
    """CPU seconds the Redis server(s) used: a single node's, or the sum over the masters."""
    if not is_cluster(conn):
        from ._redis_server import server_cpu as node_cpu

        return node_cpu(conn)
    return sum(_cpu(node.redis_connection) for node in masters(conn))


def _cpu(node: redis.Redis) -> float:
    info = node.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def cleanup(conn: Any, prefix: str) -> int:
    """Delete every key of `prefix` in the cluster layout from every master."""
    deleted = 0
    for node in masters(conn):
        client = node.redis_connection
        for pattern in (f"{{{prefix}:*", f"{{{prefix}}}:*"):
            keys = list(client.scan_iter(match=pattern, count=2000))
            for start in range(0, len(keys), 500):
                for key in keys[start : start + 500]:
                    deleted += client.unlink(key)
    conn.delete(f"sharq:deep_status:{prefix}")
    conn.delete(f"sharq:requeue_lock:{prefix}")
    return deleted


def _snapshot(conn: redis.cluster.RedisCluster) -> Dict[str, Dict[str, float]]:
    found = {}
    for node in masters(conn):
        client = node.redis_connection
        stats = client.info("commandstats")
        found[node.name] = {
            "cpu": _cpu(client),
            "commands": float(sum(int(v["calls"]) for v in stats.values())),
            "keys": float(client.dbsize()),
        }
    return found


def shard_load(make_redis: Callable[[], Any], n: int, queues: int, batch: int, progress: bool = True) -> List[Dict[str, Any]]:
    """The batched workload (enqueue_many, dequeue_many, finish_many of `n` jobs over
    `queues` queues) on a cluster, with each master's share of the payloads, of the
    commands and of the server CPU, and its CPU per job handled by that master."""
    conn = make_redis()
    prefix = _bench.new_prefix()
    client = Client(conn, key_prefix=prefix, job_expire_interval=_bench.BENCH_JOB_EXPIRE_MS)
    rows: Dict[str, Dict[str, Any]] = {}
    try:
        client.load_scripts()
        before = _snapshot(conn)
        start = time.perf_counter()
        for first in range(0, n, batch):
            client.enqueue_many([_bench._job(i, queues) for i in range(first, min(n, first + batch))])
        payloads = _payloads(conn, prefix)
        taken: List[Any] = []
        while len(taken) < n:
            jobs = client.dequeue_many(_bench.QUEUE_TYPE, min(batch, n - len(taken)))
            if not jobs:
                raise RuntimeError(f"dequeue_many found no ready queue after {len(taken)} of {n} jobs")
            taken.extend(jobs)
        for first in range(0, n, batch):
            client.finish_many(taken[first : first + batch])
        seconds = time.perf_counter() - start
        after = _snapshot(conn)
        commands = sum(after[name]["commands"] - before[name]["commands"] for name in after)
        cpu = sum(after[name]["cpu"] - before[name]["cpu"] for name in after)
        for name in after:
            jobs_here = payloads.get(name, 0)
            used = after[name]["cpu"] - before[name]["cpu"]
            rows[name] = {
                "shard": name,
                "payload_share": jobs_here / n,
                "command_share": (after[name]["commands"] - before[name]["commands"]) / commands if commands else 0.0,
                "cpu_share": used / cpu if cpu else 0.0,
                "server_us_per_job_here": 1e6 * used / jobs_here if jobs_here else 0.0,
                "jobs": jobs_here,
            }
        if progress:
            _bench.Progress("shard load", n, progress).close(f"{3 * n / seconds:,.0f} job-ops/s")
    finally:
        cleanup(conn, prefix)
        client.close()
        conn.close()
    return sorted(rows.values(), key=lambda row: row["shard"])


def _payloads(conn: redis.cluster.RedisCluster, prefix: str) -> Dict[str, int]:
    counts = {}
    for node in masters(conn):
        client = node.redis_connection
        keys = list(client.scan_iter(match=f"{{{prefix}:*}}:payload", count=2000))
        counts[node.name] = sum(client.hlen(key) - 1 for key in keys)  # less the placeholders
    return counts


def format_shards(rows: List[Dict[str, Any]]) -> str:
    """The shard table."""
    lines = [f"{'shard':<22} {'payloads':>9} {'commands':>9} {'server CPU':>10} {'server us/job':>13}"]
    for row in rows:
        lines.append(
            f"{row['shard']:<22} {100 * row['payload_share']:>8.1f}% {100 * row['command_share']:>8.1f}% "
            f"{100 * row['cpu_share']:>9.1f}% {row['server_us_per_job_here']:>13.1f}"
        )
    return "\n".join(lines)


# -- sharq-fast bench --cluster / --url redis+cluster:// ------------------------------------


def private_cluster() -> Any:
    """A private 3-master Redis Cluster on this machine (stop() it)."""
    from ._redis_cluster import RedisCluster

    return RedisCluster(masters=3)


def run_on_cluster(args: Any, url: str, cores: Sequence[str], base: str, rep: int) -> List[Any]:
    """The bench workload on the cluster at `url`; results labelled "<impl> cluster"."""
    from ._cluster_connect import cluster_client

    results: List[Any] = []
    for core_name in cores:
        for result in _bench.run_sharq_fast(
            lambda: cluster_client(url, asyncio=False), core_name, n=args.n, queues=args.queues,
            batch=args.batch, modes=args.modes, progress=args.progress, rep=rep, prefix_base=base,
        ):
            result.impl = f"{result.impl} cluster"
            results.append(result)
    return results


def shard_report(args: Any, url: Optional[str], make_redis: Callable[[], Any]) -> Dict[str, Any]:
    """The load of each shard under the batched workload (on the cluster at `url`, else
    the one make_redis gives): rows for --out, and the printed table as "shard_table"."""
    from ._cluster_connect import cluster_client

    make = (lambda: cluster_client(url, asyncio=False)) if url else make_redis
    rows = shard_load(make, args.n, args.queues, args.batch, args.progress)
    table = f"shard load (batched workload, {args.n:,} jobs over {args.queues:,} queues):\n{format_shards(rows)}"
    return {"shards": rows, "shard_table": table}
