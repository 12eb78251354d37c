"""``sharq-fast``: benchmark, compare with sharq 1.3.0, show metrics, run the requeuer.

    sharq-fast bench   [--url URL | --config sharq.conf] [--n N] [--queues Q] [--out DIR]
    sharq-fast compare [--url URL | --config sharq.conf] [--repeat R] [--out DIR]
    sharq-fast compare --peers [LIST] [--workloads LIST] [--size N] [--repeat R] [--out DIR]
    sharq-fast stats   [QUEUE_TYPE [QUEUE_ID]] [--json]
    sharq-fast requeue [--loop]
    sharq-fast serve   [--host H --port P --workers N] [--auth-token T | --basic-auth U:P]
    sharq-fast bench-http [--n N] [--clients 64] [--workers 1,2] [--out DIR]
    sharq-fast worker  MODULE:FUNCTION --queue-type T [--concurrency N] [--async] [--processes N]
    sharq-fast redrive DEAD_LETTER_TYPE --to QUEUE_TYPE --interval MS
    sharq-fast soak    [--jobs N] [--duration S] [--restart-every S] [--kill-every S]

Errors print one line on stderr and exit 1 (2 for bad arguments); set SHARQ_FAST_DEBUG=1
for tracebacks. The CLI itself needs the standard library only (matplotlib, optional, for
the charts of bench/compare).
"""

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

PROG = "sharq-fast"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_ENV = "SHARQ_FAST_URL"
DEBUG_ENV = "SHARQ_FAST_DEBUG"


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_list(text: str) -> List[int]:
    try:
        values = [_positive_int(part.strip()) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


# -- connection ---------------------------------------------------------------------------


class Target:
    """The Redis a command works on: a user's (--url / --config) or a private server."""

    def __init__(self, args: argparse.Namespace, allow_private: bool, progress: bool = True) -> None:
        import redis

        from ._connect import close_owned, redis_for_config, redis_from
        from .config import read_config
        from .exceptions import BadArgumentException

        self.server: Any = None
        self.config: Any = None
        self.private = False
        if args.url and args.config:
            raise CliError("give --url or --config, not both")
        self.cluster = False
        if args.config:
            self.config = config = read_config(args.config)
            kwargs = dict(config.redis)
            self.make_redis: Callable[[], Any] = lambda: redis_for_config(config, asyncio=False)
            self.redis_spec: Dict[str, Any] = {"config": args.config}  # for processes of the bench
            where = kwargs.get("unix_socket_path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            if config.sentinel is not None:
                hosts = ",".join(f"{host}:{port}" for host, port in config.sentinel.sentinels)
                where = f"master {config.sentinel.master!r} of the sentinels at {hosts}"
            self.describe = f"Redis at {where} db {kwargs.get('db', 0)} (from {args.config})"
            if self.config.clustered:
                from ._connect import from_config

                self.cluster = True
                self.make_redis = lambda: from_config(args.config, asyncio=False)[0]
                self.describe = f"Redis Cluster at {where} (from {args.config})"
        elif (args.url or "").startswith(("redis+cluster://", "rediss+cluster://")):
            from ._cluster_connect import cluster_client, parse_cluster_url

            try:
                parse_cluster_url(args.url)
            except ValueError as exc:
                raise CliError(f"bad --url {args.url!r}: {exc}") from None
            self.url = url = args.url
            self.cluster = True
            self.make_redis = lambda: cluster_client(url, asyncio=False)
            self.redis_spec = {"url": url}
            self.describe = f"Redis Cluster at {_redact(url)}"
        else:
            url = args.url
            if not url and allow_private:
                from ._redis_server import RedisServer

                try:
                    self.server = RedisServer()
                except RuntimeError as exc:
                    raise CliError(f"{exc}") from None
                url = self.server.url
                self.private = True
            url = url or os.environ.get(URL_ENV) or DEFAULT_URL
            try:
                close_owned(redis_from(url, asyncio=False)[0])
            except (ValueError, BadArgumentException) as exc:
                raise CliError(f"bad --url {_redact(url)!r}: {exc}") from None
            self.url = url
            self.make_redis = lambda: redis_from(url, asyncio=False)[0]
            self.redis_spec = {"url": url}
            self.describe = (
                f"private redis-server {self.server.binary} on port {self.server.port}" if self.private else f"Redis at {_redact(url)}"
            )
        conn = self.make_redis()
        try:
            node = conn.get_default_node().redis_connection if self.cluster else conn
            try:
                info = node.info("server")
                self.redis_version = info.get("redis_version", "?")
            except redis.ResponseError:  # an answer all the same (an ACL user without INFO)
                self.redis_version = "?"
        except redis.RedisError as exc:
            self.close()
            raise CliError(f"cannot reach {self.describe}: {exc}") from None
        finally:
            close_owned(conn)

    def peer_redis_kwargs(self) -> Dict[str, Any]:
        """What a sharq 1.3.0 config file needs to reach this Redis."""
        conn = self.make_redis()
        if getattr(conn.connection_pool, "sentinel_manager", None) is not None:
            conn.close()
            raise CliError("sharq 1.3.0 cannot connect through Redis Sentinel: give the master's redis:// URL")
        if self.config is not None:
            conn.close()
            return dict(self.config.redis)
        try:
            pool = conn.connection_pool
            kwargs = dict(pool.connection_kwargs)
            kwargs["connection_class"] = pool.connection_class
            return kwargs
        finally:
            conn.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _client(args: argparse.Namespace, target: Target, **overrides: Any) -> Any:
    from .client import Client

    settings: Dict[str, Any] = {}
    if args.key_prefix:
        settings["key_prefix"] = args.key_prefix
    if args.job_expire_interval:
        settings["job_expire_interval"] = args.job_expire_interval
    settings.update(overrides)
    if target.config is not None:
        return Client.from_config(args.config, **settings)
    return Client(target.url, **settings)


def _note(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# -- bench / compare --------------------------------------------------------------------------


def _cores(args: argparse.Namespace) -> List[str]:
    from ._bench import available_cores

    built = available_cores()
    wanted = args.cores or ["c", "py"]
    chosen = [name for name in wanted if name in built]
    for name in wanted:
        if name not in built:
            _note(f"the compiled core (sharq_fast._core_c) is not built: skipping core {name!r}")
    if not chosen:
        raise CliError("no core to benchmark")
    return chosen


def _scaling(
    args: argparse.Namespace,
    target: Target,
    cores: Sequence[str],
    rep: int,
    peer: Optional[Callable[[str, int, int, int], Any]] = None,
) -> List[Any]:
    from . import _bench
    from .client import Client

    results: List[Any] = []
    for size in args.scaling_sizes:
        prefix = _bench.new_prefix(args.key_prefix or _bench.BENCH_PREFIX_BASE)
        conn = target.make_redis()
        client = Client(conn, key_prefix=prefix, job_expire_interval=_bench.BENCH_JOB_EXPIRE_MS)
        try:
            peer_count = 0
            if peer is not None:
                peer_count = args.scaling_dequeues if size <= 10_000 else min(args.scaling_dequeues, args.peer_scaling_cap)
            total = args.scaling_dequeues * len(cores) + peer_count
            _bench.fill_ready_queues(client, size, _bench.jobs_per_queue_for(size, total), args.progress)
            for core_name in cores:
                results.append(_bench.scaling_dequeues(client, conn, core_name, size, args.scaling_dequeues, args.progress, rep))
            if peer is not None:
                results.append(peer(prefix, size, peer_count, rep))
        finally:
            _bench.cleanup(conn, prefix)
            client.close()
            conn.close()
    return results


def _report(
    args: argparse.Namespace, name: str, target: Target, results: List[Any], settings: Dict[str, Any],
    reference: Optional[str], extra: Optional[Dict[str, Any]] = None,
) -> None:
    from . import _bench

    rows = _bench.summarize(results, reference)
    rows.sort(key=lambda r: (r["case"] != "workload", r["ready_queues"], _bench.OPS.index(r["op"]), r["mode"] != "single", r["impl"] != _bench.SHARQ_FAST, r["impl"], r["core"]))
    title = f"sharq-fast {name}: {settings['n']:,} jobs over {settings['queues']:,} queues, batch {settings['batch']}"
    print(title)
    print(f"Redis {target.redis_version}: {target.describe}")
    print(_bench.format_table(rows, with_spread=settings.get("repeat", 1) > 1, reference=reference if any(r.get("vs_reference") for r in rows) else None))
    if settings.get("repeat", 1) > 1:
        print(f"(medians of {settings['repeat']} interleaved repetitions; spread = (max - min) / median of jobs/s)")
    for row in rows:
        if row["case"] == "scaling" and row["impl"] == _bench.SHARQ_FAST and row["ready_queues"] >= 100_000:
            verdict = "OK" if row["jobs_per_s"] >= 4000 else "BELOW TARGET"
            print(f"scaling check: {row['impl']} ({row['core']}) at {row['ready_queues']:,} ready queues: "
                  f"{row['jobs_per_s']:,.0f} single dequeues/s (target >= 4,000): {verdict}")
    if any(r["impl"] == _bench.BASELINE for r in rows):
        print("redis-py baseline = the round-trip floor, not a queue: enqueue = RPUSH, dequeue = LPOP, finish = INCR "
              f"(single: one command per call; batch: pipelines of {settings['batch']})")
    if extra and "async" in extra:
        from ._bench_async import checks, format_checks

        extra["async"]["checks"] = checks(rows, extra["async"])
        print(format_checks(extra["async"]["checks"]))
    if extra and "consumer" in extra:
        print(extra["consumer"].pop("table"))
    if not target.private:
        print("note: server CPU is INFO cpu of a shared Redis; other clients' load is included")
    if args.out:
        document = {
            "command": name,
            "argv": sys.argv[1:],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": _bench.environment(),
            "redis": {"version": target.redis_version, "where": target.describe, "private": target.private},
            "settings": settings,
            "baseline": "redis-py round-trip floor: enqueue = RPUSH, dequeue = LPOP, finish = INCR; "
            "single = one command per call, batch = a pipeline of `batch` commands",
            "summary": rows,
            "results": [r.to_dict() for r in results],
        }
        document.update(extra or {})
        for note in _bench.write_outputs(args.out, name, document, rows, title):
            print(note)


def _settings(args: argparse.Namespace, repeat: int) -> Dict[str, Any]:
    return {
        "n": args.n, "queues": args.queues, "batch": args.batch, "repeat": repeat,
        "scaling_sizes": [] if args.no_scaling else args.scaling_sizes,
        "scaling_dequeues": args.scaling_dequeues,
    }


def _async_runner(args: argparse.Namespace, target: Target, core_name: str, base: str) -> Callable[[int], List[Any]]:
    from . import _bench_async

    return lambda rep: _bench_async.run_async(
        target.redis_spec, core_name, n=args.n, queues=args.queues, batch=args.batch, progress=args.progress,
        rep=rep, prefix_base=base,
    )


def _async_cases(args: argparse.Namespace, target: Target, cores: Sequence[str], base: str) -> Dict[str, Any]:
    from . import _bench_async

    return _bench_async.run_cases(
        target.redis_spec, cores, samples=args.wake_samples, consumers=args.idle_consumers, seconds=args.idle_seconds,
        progress=args.progress, prefix_base=base,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from . import _bench, _bench_cluster

    cores = _cores(args)
    target = Target(args, allow_private=True)
    try:
        _note(f"sharq-fast bench against {target.describe}")
        base = args.key_prefix or _bench.BENCH_PREFIX_BASE
        results: List[Any] = []
        if args.cluster:
            _note("starting a private 3-master Redis Cluster")
            args.private_cluster = _bench_cluster.private_cluster()
        for rep in range(args.repeat):
            for core_name in cores:
                results += _bench.run_sharq_fast(
                    target.make_redis, core_name, n=args.n, queues=args.queues, batch=args.batch,
                    modes=args.modes, progress=args.progress, rep=rep, prefix_base=base,
                )
                if not args.no_async and not target.cluster:
                    results += _async_runner(args, target, core_name, base)(rep)
            if args.cluster:  # interleaved: both see the same load of this machine
                results += _bench_cluster.run_on_cluster(args, args.private_cluster.url, cores, base, rep)
        if not args.no_scaling and not target.cluster:
            for rep in range(args.repeat):
                results += _scaling(args, target, cores, rep)
        extra: Optional[Dict[str, Any]] = None
        shard_table = None
        if target.cluster or args.cluster:
            cluster = getattr(args, "private_cluster", None)
            extra = _bench_cluster.shard_report(args, cluster.url if cluster is not None else None, target.make_redis)
            shard_table = extra.pop("shard_table")
        if not args.no_async and not target.cluster:
            extra = {**(extra or {}), "async": _async_cases(args, target, cores, base)}
        if not args.no_consumer and not target.cluster:
            from .consumer import bench as consumer_bench

            extra = {**(extra or {}), "consumer": consumer_bench.cli_cases(args, target, cores, base)}
        _report(args, "bench", target, results, _settings(args, args.repeat), None, extra)
        if shard_table:
            print(shard_table)
    finally:
        target.close()
        if getattr(args, "private_cluster", None) is not None:
            args.private_cluster.stop()
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import _bench, _peer

    if args.peers is not None:
        return cmd_compare_peers(args)
    cores = _cores(args)
    peer_python = None
    versions: Dict[str, Any] = {}
    if not args.no_peer:
        peer_python = _peer.ensure_peer_python(args.peer_venv, log=_note)
        _note(f"sharq 1.3.0 peer: {peer_python}")
    target = Target(args, allow_private=True)
    conf_dir = tempfile.mkdtemp(prefix="sharq-fast-peer-conf-")
    base = args.key_prefix or _bench.BENCH_PREFIX_BASE
    try:
        _note(f"sharq-fast compare against {target.describe}")
        peer_kwargs = target.peer_redis_kwargs() if peer_python else {}

        def peer_run(spec: Dict[str, Any], prefix: str) -> List[Any]:
            conf = _peer.write_peer_config(
                os.path.join(conf_dir, f"{prefix}.conf"), peer_kwargs, prefix, _bench.BENCH_JOB_EXPIRE_MS
            )
            answer = _peer.run_peer(peer_python, dict(spec, config=conf, queue_type=spec.get("queue_type", _bench.QUEUE_TYPE)))
            versions.update(answer.get("versions", {}))
            return answer["results"]

        def peer_workload(rep: int) -> List[Any]:
            prefix = _bench.new_prefix(base)
            conn = target.make_redis()
            try:
                spec = {"mode": "workload", "n": args.n, "queues": args.queues, "payload": _bench.PAYLOAD, "label": "sharq 1.3.0"}
                return [
                    _bench.Result(impl=_bench.PEER, core="-", mode="single", rep=rep, **r) for r in peer_run(spec, prefix)
                ]
            finally:
                _bench.cleanup(conn, prefix)
                conn.close()

        def peer_scaling(prefix: str, size: int, count: int, rep: int) -> Any:
            spec = {
                "mode": "scaling", "count": count, "budget": args.peer_budget,
                "queue_type": _bench.SCALING_QUEUE_TYPE, "label": f"sharq 1.3.0 {size:,} ready queues",
            }
            (r,) = peer_run(spec, prefix)
            return _bench.Result(impl=_bench.PEER, core="-", mode="single", case="scaling", ready_queues=size, rep=rep, **r)

        runners: List[Callable[[int], List[Any]]] = []
        for core_name in cores:
            runners.append(
                lambda rep, core_name=core_name: _bench.run_sharq_fast(
                    target.make_redis, core_name, n=args.n, queues=args.queues, batch=args.batch,
                    modes=args.modes, progress=args.progress, rep=rep, prefix_base=base,
                )
            )
            if not args.no_async:
                runners.append(_async_runner(args, target, core_name, base))
        if peer_python:
            runners.append(peer_workload)
        if not args.no_baseline:
            runners.append(
                lambda rep: _bench.run_baseline(
                    target.make_redis, n=args.n, queues=args.queues, batch=args.batch, modes=args.modes,
                    progress=args.progress, rep=rep, prefix_base=base,
                )
            )
        results: List[Any] = []
        for rep in range(args.repeat):
            _note(f"repetition {rep + 1} of {args.repeat}")
            shift = rep % len(runners)
            for runner in runners[shift:] + runners[:shift]:
                results += runner(rep)
            if not args.no_scaling:
                results += _scaling(args, target, cores, rep, peer_scaling if peer_python else None)
        extra = {"peer": {"requirement": _peer.PEER_REQUIREMENT, "python": peer_python, "versions": versions}} if peer_python else {}
        if not args.no_async:
            extra["async"] = _async_cases(args, target, cores, base)
        if not args.no_consumer and not target.cluster:
            from .consumer import bench as consumer_bench

            extra["consumer"] = consumer_bench.cli_cases(args, target, cores, base, peer_run if peer_python else None)
        _report(args, "compare", target, results, _settings(args, args.repeat), _bench.PEER if peer_python else None, extra)
        if versions:
            print(f"peer: sharq {versions.get('sharq')} with msgpack {versions.get('msgpack')} ({versions.get('msgpack_impl')}), "
                  f"redis-py {versions.get('redis')}, Python {versions.get('python')}")
    finally:
        target.close()
        import shutil

        shutil.rmtree(conf_dir, ignore_errors=True)
    return 0


def cmd_compare_peers(args: argparse.Namespace) -> int:
    from .peers import command

    if args.url or args.config:
        raise CliError("--peers runs on a private redis-server only (it flushes it between runs): drop --url/--config")
    settings = command.settings_for(args.size, args.repeat, args.tenants, args.rate, args.budget)
    return command.run_command(args.peers, args.workloads, settings, args.out, _note)


# -- stats ----------------------------------------------------------------------------------


def _minute(epoch_ms: int) -> str:
    return datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _counts_table(enqueues: Dict[int, int], dequeues: Dict[int, int]) -> List[str]:
    lines = [f"{'minute':<20}  {'enqueued':>9}  {'dequeued':>9}"]
    for minute in enqueues:
        lines.append(f"{_minute(minute):<20}  {enqueues[minute]:>9,}  {dequeues.get(minute, 0):>9,}")
    lines.append(f"{'total (10 min)':<20}  {sum(enqueues.values()):>9,}  {sum(dequeues.values()):>9,}")
    return lines


def cmd_stats(args: argparse.Namespace) -> int:
    import msgspec

    if args.queue_id is not None and args.queue_type is None:  # cannot happen with positionals; kept for clarity
        raise CliError("QUEUE_ID needs QUEUE_TYPE")
    target = Target(args, allow_private=False)
    client = _client(args, target)
    try:
        metrics = client.metrics(args.queue_type, args.queue_id)
        data = msgspec.to_builtins(metrics)
        if args.queue_type is None:
            if args.json:
                print(json.dumps({"key_prefix": client.key_prefix, **data}, indent=2))
                return 0
            print(f"key prefix {client.key_prefix!r}; queue types: {', '.join(metrics.queue_types) or '(none)'}")
            print("\n".join(_counts_table(metrics.enqueue_counts, metrics.dequeue_counts)))
        elif args.queue_id is None:
            ids = metrics.queue_ids
            lengths: Dict[str, int] = {}
            if ids and target.cluster:
                lengths = {queue_id: client.queue_length(args.queue_type, queue_id) for queue_id in ids}
            elif ids:
                pipe = client.redis.pipeline(transaction=False)
                for queue_id in ids:
                    pipe.llen(f"{client.key_prefix}:{args.queue_type}:{queue_id}")
                lengths = dict(zip(ids, pipe.execute()))
            if args.json:
                print(json.dumps({"key_prefix": client.key_prefix, "queue_type": args.queue_type, "queue_ids": ids,
                                  "queue_lengths": lengths}, indent=2))
                return 0
            print(f"queue type {args.queue_type!r} (key prefix {client.key_prefix!r}): {len(ids):,} queues")
            if ids:
                width = max(8, *(len(q) for q in ids))
                print(f"{'queue id':<{width}}  {'length':>9}")
                for queue_id in ids:
                    print(f"{queue_id:<{width}}  {lengths[queue_id]:>9,}")
        else:
            if args.json:
                print(json.dumps({"key_prefix": client.key_prefix, "queue_type": args.queue_type,
                                  "queue_id": args.queue_id, **data}, indent=2))
                return 0
            print(f"queue {args.queue_type}/{args.queue_id} (key prefix {client.key_prefix!r}): "
                  f"queue length {metrics.queue_length:,}")
            print("\n".join(_counts_table(metrics.enqueue_counts, metrics.dequeue_counts)))
    finally:
        client.close()
        target.close()
    return 0


# -- requeue ----------------------------------------------------------------------------------


def cmd_requeue(args: argparse.Namespace) -> int:
    target = Target(args, allow_private=False)
    overrides: Dict[str, Any] = {}
    if args.interval:
        overrides["job_requeue_interval"] = args.interval
    client = _client(args, target, **overrides)
    try:
        if not args.loop:
            result = client.requeue()
            if args.json:
                import msgspec

                print(json.dumps(msgspec.to_builtins(result), default=repr))
                return 0
            print(f"requeued {result.requeued} jobs, discarded {len(result.discarded)} (key prefix {client.key_prefix!r})")
            for job in result.discarded:
                print(f"discarded {job.queue_type}/{job.queue_id}/{job.job_id}: requeue limit reached")
            return 0
        return _requeue_loop(client)
    finally:
        client.close()
        target.close()


def _requeue_loop(client: Any) -> int:
    from .requeuer import Requeuer

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("sharq_fast.cli")
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    requeuer = Requeuer(client._transport)
    lock_key = f"sharq:requeue_lock:{client.key_prefix}"
    log.info(
        "requeue daemon started: pid %d, key prefix %r, every %d ms", os.getpid(), client.key_prefix, client.job_requeue_interval
    )
    holding: Optional[bool] = None
    try:
        while not stop.is_set():
            tick = client._run(requeuer.schedule.round())
            pause = requeuer.schedule.pause_after(tick)
            if tick.held != holding:
                if tick.held:
                    log.info("holding the requeue lock %s; requeuing", lock_key)
                else:
                    log.info("not requeuing this round: another process holds %s (or an error is logged above)", lock_key)
                holding = tick.held
            stop.wait(pause)
    finally:
        requeuer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("requeue daemon stopped after %d rounds", requeuer.runs)
    return 0


# -- serve ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from .http.serve import serve
    from .http.settings import build_settings

    target = Target(args, allow_private=False)  # one clear line now if Redis is unreachable
    url = None if args.config else target.url
    target.close()
    settings = build_settings(
        config=args.config, url=url, key_prefix=args.key_prefix, job_expire_interval=args.job_expire_interval,
        host=args.host, port=args.port, workers=args.workers, auth_token=args.auth_token, basic_auth=args.basic_auth,
        requeuer=False if args.no_requeuer else None, max_body_size=args.max_body_size, max_wait=args.max_wait,
        max_batch=args.max_batch, access_log=args.access_log, log_level=args.log_level, retry_for=args.retry_for,
    )
    return serve(settings)


def cmd_bench_http(args: argparse.Namespace) -> int:
    from .http import bench

    servers = [bench.SHARQ_FAST] + ([] if args.no_sharq_server else [bench.SHARQ_SERVER])
    venv = None
    if not args.no_sharq_server:
        from .http._peer_server import ensure_server_venv, server_versions

        venv = ensure_server_venv(args.sharq_server_venv, log=_note)
        _note(f"sharq-server: {venv} {server_versions(venv)}")
    target = Target(args, allow_private=True)
    if target.config is not None:
        target.close()
        raise CliError("bench-http takes --url (or a private redis-server), not --config")
    try:
        _note(f"sharq-fast bench-http against {target.describe}")
        results = bench.run_bench(
            target.url, servers=servers, workers=args.workers, n=args.n, queues=args.queues, clients=args.clients,
            batch=args.batch, repeat=args.repeat, venv=venv, log=_note,
        )
    finally:
        target.close()
    settings = {"n": args.n, "queues": args.queues, "clients": args.clients, "batch": args.batch,
                "workers": args.workers, "repeat": args.repeat}
    print(bench.report(results, settings, {"version": target.redis_version, "where": target.describe}, args.out))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .consumer import worker

    settings: Dict[str, Any] = {}
    if args.key_prefix:
        settings["key_prefix"] = args.key_prefix
    if args.job_expire_interval:
        settings["job_expire_interval"] = args.job_expire_interval
    try:
        options = worker.WorkerOptions(
            handler=args.handler, queue_types=worker.parse_queue_types(args.queue_type), redis={},
            client_settings=settings, use_async=args.use_async, concurrency=args.concurrency,
            processes=args.processes, dead_letter=args.dead_letter, grace_period=args.grace_period,
            job_timeout=args.job_timeout, retry_backoff=args.retry_backoff, requeuer=not args.no_requeuer,
            status=args.status, log_every=args.log_every,
        )
        handler = worker.prepare(options)
    except worker.WorkerError as exc:
        raise CliError(str(exc)) from None
    target = Target(args, allow_private=False)  # "cannot reach Redis" now, not in N processes later
    target.close()
    options.redis = {"config": args.config} if args.config else {"url": target.url}
    return worker.run_worker(options, level=args.log_level.upper(), handler=handler)


def cmd_redrive(args: argparse.Namespace) -> int:
    from ._core_py import check_identifier
    from ._redrive import redrive
    from .exceptions import BadArgumentException

    for option, name in (("DEAD_LETTER_TYPE", args.dead_letter), ("--to", args.to)):
        try:
            check_identifier(name, option)
        except BadArgumentException:
            raise CliError(f"{option} {name!r}: a queue type is 1 to 100 characters of A-Z a-z 0-9 _ -") from None
    if args.dead_letter == args.to:
        raise CliError("--to must name another queue type than the dead-letter one")
    target = Target(args, allow_private=False)
    client = _client(args, target)
    try:
        counts = redrive(client, args.dead_letter, args.to, args.interval, requeue_limit=args.requeue_limit, limit=args.max)
    finally:
        client.close()
        target.close()
    print(f"moved {counts['moved']} jobs from {args.dead_letter!r} to {args.to!r}; already in {args.to!r} (dead-letter "
          f"copy dropped): {counts['already_there']}; lease lost meanwhile (left in {args.dead_letter!r}): "
          f"{counts['not_finished']}")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from . import _soak

    return _soak.main_from_args(args)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("Redis")
    where.add_argument("--url", help=f"Redis URL (redis://, rediss://, unix://, redis+sentinel://h1:p1,h2:p2/master[/db]); default ${URL_ENV} or {DEFAULT_URL} "
                       "(bench/compare: a private redis-server)")
    where.add_argument("--config", metavar="SHARQ_CONF", help="a SharQ config file (sharq.conf) instead of --url")
    where.add_argument("--key-prefix", help="key prefix (default: the config's, else sharq_server; bench/compare: "
                       "the base of a private prefix they delete afterwards)")
    where.add_argument("--job-expire-interval", type=_positive_int, metavar="MS",
                       help="ms a dequeued job may stay unfinished (default: the config's, else 1000)")

    parser = _Parser(prog=PROG, description="sharq_fast: benchmarks, metrics and the requeue daemon.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def workload_options(p: argparse.ArgumentParser, repeat: int) -> None:
        p.add_argument("--n", type=_positive_int, default=20_000, help="jobs in the workload (default 20000)")
        p.add_argument("--queues", type=_positive_int, default=100, help="queues the jobs spread over (default 100)")
        p.add_argument("--batch", type=_positive_int, default=1000, help="jobs per batched call (default 1000)")
        p.add_argument("--repeat", type=_positive_int, default=repeat, help=f"repetitions, interleaved (default {repeat})")
        p.add_argument("--cores", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], metavar="c,py",
                       help="sharq_fast cores to run (default: both; the compiled one when built)")
        p.add_argument("--modes", type=lambda s: [m.strip() for m in s.split(",") if m.strip()], default=["single", "batch"],
                       metavar="single,batch", help="call styles (default both)")
        p.add_argument("--no-scaling", action="store_true", help="skip the ready-queue scaling case")
        p.add_argument("--no-async", action="store_true", help="skip the AsyncClient cases (single calls by 1 and "
                       "100 tasks, batches, wake-up latency, idle waiting consumers)")
        p.add_argument("--no-consumer", action="store_true", help="skip the consumer loop cases (Consumer, "
                       "AsyncConsumer, the naive loops" + (", the sharq 1.3.0 loop" if repeat > 1 else "") + ")")
        p.add_argument("--consumer-n", type=_positive_int, default=100_000, metavar="N",
                       help="jobs of each consumer loop case (default 100000)")
        p.add_argument("--consumer-queues", type=_positive_int, default=1000, metavar="N",
                       help="queues they spread over (default 1000)")
        p.add_argument("--wake-samples", type=_positive_int, default=300, metavar="N",
                       help="enqueues timed to a waiting consumer, per transport (default 300)")
        p.add_argument("--idle-consumers", type=_positive_int, default=8, metavar="N",
                       help="idle waiting consumer processes measured (default 8)")
        p.add_argument("--idle-seconds", type=float, default=5.0, metavar="S", help="how long they are measured (default 5)")
        p.add_argument("--scaling-sizes", type=_int_list, default=[100, 10_000, 100_000], metavar="N,N,N",
                       help="ready queues of the scaling case (default 100,10000,100000)")
        p.add_argument("--scaling-dequeues", type=_positive_int, default=2000, metavar="N",
                       help="single dequeues measured per scaling size (default 2000)")
        p.add_argument("--out", metavar="DIR", help="write NAME.json and NAME.png (with matplotlib) there")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    bench = sub.add_parser("bench", parents=[common], help="benchmark sharq_fast (both cores, single and batched calls)",
                           description="Benchmark sharq_fast: enqueue, dequeue, finish; single and batched; both cores.")
    workload_options(bench, 1)
    bench.add_argument("--cluster", action="store_true",
                       help="also run the workload on a private 3-master Redis Cluster started here, and report "
                            "the load of each shard")
    bench.set_defaults(func=cmd_bench)

    compare = sub.add_parser("compare", parents=[common], help="the same workload through sharq 1.3.0 and plain redis-py",
                             description="Run the bench workload through sharq_fast, Plivo's sharq 1.3.0 (in its own "
                             "virtualenv) and a redis-py baseline (RPUSH/LPOP/INCR round-trip floor), interleaved.")
    workload_options(compare, 3)
    compare.add_argument("--peer-venv", metavar="DIR", help="the sharq 1.3.0 virtualenv, built there if missing "
                         "(default $SHARQ_FAST_PEER_VENV or ~/.cache/sharq-fast/peer-sharq-1.3.0)")
    compare.add_argument("--peer-scaling-cap", type=_positive_int, default=50, metavar="N",
                         help="sharq 1.3.0's measured dequeues above 10,000 ready queues (default 50)")
    compare.add_argument("--peer-budget", type=float, default=60.0, metavar="SECONDS",
                         help="time limit of one sharq 1.3.0 scaling measurement (default 60)")
    compare.add_argument("--no-peer", action="store_true", help="skip sharq 1.3.0")
    compare.add_argument("--no-baseline", action="store_true", help="skip the redis-py baseline")
    peers = compare.add_argument_group(
        "other queue systems", "--peers compares sharq_fast with other queues instead (each in an environment of its "
        "own, cached in ~/.cache/sharq-fast/peers; docs/benchmarks.md): bulk enqueue, drains, latency, rate limits")
    peers.add_argument("--peers", nargs="?", const="all", metavar="LIST",
                       help="comma list of sharq,bullmq,rq,arq,saq,dramatiq,celery,huey,taskiq (no list: all)")
    peers.add_argument("--workloads", metavar="LIST", help="comma list of enqueue,drain,drain_io,latency,rate (default: all)")
    peers.add_argument("--size", type=_positive_int, default=100_000, metavar="N",
                       help="jobs per enqueue/drain run (default 100000; the latency run sends N/50, at most 2000)")
    peers.add_argument("--tenants", type=_positive_int, metavar="N", help="tenants of the rate-limit case (default 10000)")
    peers.add_argument("--rate", type=float, metavar="JOBS_PER_S", help="send rate of the latency run (default 200)")
    peers.add_argument("--budget", type=float, metavar="SECONDS",
                       help="time limit of one drain or rate run; slower peers are measured over the jobs done by then (default 90)")
    compare.set_defaults(func=cmd_compare)

    stats = sub.add_parser("stats", parents=[common], help="queue metrics (Client.metrics) as a table or JSON",
                           description="Metrics: queue types and per-minute counts; the queues of a type; one queue.")
    stats.add_argument("queue_type", nargs="?", metavar="QUEUE_TYPE")
    stats.add_argument("queue_id", nargs="?", metavar="QUEUE_ID")
    stats.add_argument("--json", action="store_true", help="JSON for scripts")
    stats.set_defaults(func=cmd_stats)

    requeue = sub.add_parser("requeue", parents=[common], help="requeue expired jobs (once, or as a daemon with --loop)",
                             description="Put expired active jobs back in their queues. --loop runs a daemon holding the "
                             "key prefix's requeue lock (one at a time) until SIGINT/SIGTERM.")
    requeue.add_argument("--loop", action="store_true", help="run until SIGINT/SIGTERM")
    requeue.add_argument("--interval", type=_positive_int, metavar="MS", help="ms between rounds (default: the config's "
                         "job_requeue_interval, else 1000)")
    requeue.add_argument("--json", action="store_true", help="(without --loop) print the result as JSON")
    requeue.set_defaults(func=cmd_requeue)

    serve = sub.add_parser("serve", parents=[common], help="a sharq-server compatible HTTP server (uvicorn)",
                           description="Serve sharq-server's HTTP API (and batch routes, long-poll dequeues, "
                           "Prometheus metrics) with uvicorn; the requeuer runs inside. SIGTERM stops it cleanly. "
                           "With --config, the [sharq-server] section gives host, port, workers, accesslog. "
                           "Routes: docs/http.md.")
    serve.add_argument("--host", help="address to listen on (default: the config's, else 127.0.0.1)")
    serve.add_argument("--port", type=_positive_int, help="port (default: the config's, else 8080)")
    serve.add_argument("--workers", type=_positive_int, help="uvicorn worker processes (default: the config's, else 1)")
    serve.add_argument("--auth-token", metavar="TOKEN", help="require 'Authorization: Bearer TOKEN' "
                       "(better: $SHARQ_FAST_AUTH_TOKEN, or auth_token in [sharq-server])")
    serve.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require HTTP basic auth "
                       "(better: $SHARQ_FAST_BASIC_AUTH, or basic_auth in [sharq-server])")
    serve.add_argument("--no-requeuer", action="store_true", help="do not run the requeuer in the server")
    serve.add_argument("--max-body-size", type=_positive_int, metavar="BYTES", help="largest request body (default 8 MiB)")
    serve.add_argument("--max-wait", type=float, metavar="SECONDS", help="longest long-poll ?wait= (default 60)")
    serve.add_argument("--max-batch", type=_positive_int, metavar="N", help="most jobs per batch request (default 10000)")
    serve.add_argument("--retry-for", type=float, metavar="SECONDS", help="how long a Redis call whose connection "
                       "failed is retried before the request answers 503 (default 3)")
    serve.add_argument("--access-log", metavar="FILE", help="write an access log there ('-': stderr; default none)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=cmd_serve)

    bench_http = sub.add_parser("bench-http", parents=[common], help="HTTP requests/s: sharq-fast serve vs Plivo's sharq-server",
                                description="64 concurrent HTTP clients enqueue jobs, then dequeue+finish them: sharq-fast "
                                "serve (single and batch routes) and Plivo's sharq-server (gunicorn + gevent, built once in "
                                "its own virtualenv), each on a private redis-server unless --url is given.")
    bench_http.add_argument("--n", type=_positive_int, default=10_000, help="jobs per run (default 10000)")
    bench_http.add_argument("--queues", type=_positive_int, default=100, help="queues the jobs spread over (default 100)")
    bench_http.add_argument("--clients", type=_positive_int, default=64, help="concurrent HTTP clients (default 64)")
    bench_http.add_argument("--batch", type=_positive_int, default=100, help="jobs per batch request (default 100)")
    bench_http.add_argument("--workers", type=_int_list, default=[1, 2], metavar="N,N",
                            help="server worker processes to measure (default 1,2; the same for both servers)")
    bench_http.add_argument("--repeat", type=_positive_int, default=1, help="repetitions, interleaved (default 1)")
    bench_http.add_argument("--no-sharq-server", action="store_true", help="measure sharq-fast serve only")
    bench_http.add_argument("--sharq-server-venv", metavar="DIR", help="sharq-server's virtualenv, built there if missing "
                            "(default $SHARQ_FAST_SHARQ_SERVER_VENV or ~/.cache/sharq-fast/sharq-server-0.2.0)")
    bench_http.add_argument("--out", metavar="DIR", help="write bench-http.json there")
    bench_http.set_defaults(func=cmd_bench_http)

    work = sub.add_parser("worker", parents=[common], help="run a handler over queue types (Consumer / AsyncConsumer)",
                          description="Import MODULE:FUNCTION (a function taking a Job; returning finishes the job, "
                          "raising retries it) and run it over the queue types with a Consumer (threads) or, for an "
                          "async def handler, an AsyncConsumer. SIGTERM/SIGINT drains (no new jobs, running ones get "
                          "the grace period, fetched ones are released); a second signal stops at once.")
    from .consumer.worker import add_arguments as worker_arguments

    worker_arguments(work, _positive_int, _seconds)
    work.set_defaults(func=cmd_worker)

    red = sub.add_parser("redrive", parents=[common], help="move dead-lettered jobs back into a queue type",
                         description="Move the jobs of a dead-letter queue type (Consumer(dead_letter=...), "
                         "sharq-fast worker --dead-letter) back into a queue type: dequeue_many, enqueue_many, "
                         "finish_many, in rounds of 1000. Same queue ids, job ids, payloads.")
    red.add_argument("dead_letter", metavar="DEAD_LETTER_TYPE")
    red.add_argument("--to", required=True, metavar="QUEUE_TYPE", help="the queue type to move them to")
    red.add_argument("--interval", type=int, required=True, metavar="MS",
                     help="interval of their queues in QUEUE_TYPE (enqueue sets it, as in SharQ)")
    red.add_argument("--requeue-limit", type=int, metavar="N", help="their requeue limit (default: the config's)")
    red.add_argument("--max", type=_positive_int, metavar="N", help="move at most N jobs")
    red.set_defaults(func=cmd_redrive)

    soak = sub.add_parser("soak", help="crash and restart soak: producers, 8 consumers, SIGKILLs, Redis restarts",
                          description="Start a private redis-server (AOF, appendfsync always), producers "
                          "(enqueue_many) and consumer processes (Consumer) that are SIGKILLed and restarted every "
                          "few seconds while Redis is restarted every --restart-every seconds; then check that every "
                          "job was finished exactly once, none lost, redeliveries only after an expired lease, and "
                          "no queue's interval violated. Exit 1 if a check fails.")
    from ._soak import add_arguments

    add_arguments(soak)
    soak.set_defaults(func=cmd_soak)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # An empty value is a mistake (an unset variable in `--url "$REDIS_URL"`), not a wish for
    # the default: that would silently work on another Redis, or another key prefix.
    for option in ("url", "key_prefix", "config"):
        if getattr(args, option, None) == "":
            parser.error(f"--{option.replace('_', '-')} is empty")
    if getattr(args, "modes", None):
        bad = [m for m in args.modes if m not in ("single", "batch")]
        if bad:
            parser.error(f"--modes takes single and/or batch, not {','.join(bad)}")
    if getattr(args, "cores", None):
        bad = [c for c in args.cores if c not in ("c", "py")]
        if bad:
            parser.error(f"--cores takes c and/or py, not {','.join(bad)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _note(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # one line, no traceback, unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        message = "; ".join(line.strip() for line in _describe(exc).splitlines() if line.strip())
        _note(f"{PROG}: error: {message}")
        return 1


def _describe(exc: BaseException) -> str:
    import redis

    from .exceptions import SharqException

    if isinstance(exc, (CliError, SharqException)):
        return str(exc)
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, redis.RedisError):
        return f"Redis error: {exc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
    return f"{type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)"


if __name__ == "__main__":
    sys.exit(main())
