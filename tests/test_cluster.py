"""The cluster layout on a real 3-master Redis Cluster (docs/cluster-layout.md): queues
spread over every master, the interval across partitions, earliest-first dequeues across
partitions, resharding and failover while clients run, NOSCRIPT per node, configuration.

The behaviour tests of the other modules also run on the cluster (conftest's
``cluster-sync`` / ``cluster-async`` transports); these are about the cluster itself.
"""

import json
import threading
import time
from collections import Counter
from typing import Any, Dict, List

import pytest

from sharq_fast import BatchError, Client, FailOutcome
from sharq_fast._cluster_connect import parse_cluster_url
from sharq_fast._cluster_keys import DEFAULT_PARTITIONS, partition_of
from sharq_fast.exceptions import BadArgumentException

pytestmark = pytest.mark.compiled_core_only
CLUSTER_TRANSPORTS = pytest.mark.parametrize("transport", ["cluster-sync", "cluster-async"])


def payload_counts(cluster: Any, prefix: str = "sharq_server") -> Dict[int, int]:
    """Payloads held by each master."""
    counts = {}
    for port in cluster.masters():
        node = cluster.node_client(port)
        keys = list(node.scan_iter(match=f"{{{prefix}:*}}:payload", count=1000))
        counts[port] = sum(node.hlen(key) - 1 for key in keys)  # less each partition's placeholder '~'

    return counts


def drain(client: Any, queue_type: str = "default", count: int = 500) -> List[Any]:
    jobs: List[Any] = []
    while True:
        got = client.dequeue_many(queue_type, count)
        if not got:
            return jobs
        jobs.extend(got)


@CLUSTER_TRANSPORTS
def test_jobs_of_1000_queues_spread_over_every_master(make_client, redis_cluster):
    client = make_client()
    jobs = [{"queue_id": f"q{i}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(1000)]
    assert client.enqueue_many(jobs).enqueued == 1000
    counts = payload_counts(redis_cluster)
    assert sum(counts.values()) == 1000
    assert len(counts) == 3
    for port, count in counts.items():
        assert 0.20 <= count / 1000 <= 0.45, counts
    taken = drain(client)
    assert sorted(job.job_id for job in taken) == sorted(f"j{i}" for i in range(1000))
    assert all(client.finish_many(taken))
    assert sum(payload_counts(redis_cluster).values()) == 0
    assert client.metrics("default").queue_ids == []


@CLUSTER_TRANSPORTS
def test_queues_of_every_partition_are_served_earliest_first(make_client, clock):
    producer = make_client()
    order = [f"q{i}" for i in range(300)]
    assert len({partition_of(q, DEFAULT_PARTITIONS) for q in order}) == DEFAULT_PARTITIONS
    for queue_id in order:
        producer.enqueue(queue_id=queue_id, job_id="j", payload=queue_id, interval=1000)
        clock.advance(1)
    consumer = make_client()  # knows nothing yet: reads every partition head first
    served = [consumer.dequeue().queue_id for _ in order]
    assert served == order
    assert consumer.dequeue() is None


@CLUSTER_TRANSPORTS
def test_interval_holds_in_every_partition_with_concurrent_consumers(make_client):
    interval, per_queue, queues = 150, 3, 40
    producer = make_client(clock=None, job_expire_interval=60_000)
    producer.enqueue_many(
        {"queue_id": f"q{i}", "job_id": f"j{i}-{k}", "payload": k, "interval": interval}
        for k in range(per_queue)
        for i in range(queues)
    )
    consumers = [make_client(clock=None, job_expire_interval=60_000) for _ in range(3)]
    times: Dict[str, List[int]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def consume(client: Any) -> None:
        while time.monotonic() < deadline:
            with lock:
                if sum(len(v) for v in times.values()) >= per_queue * queues:
                    return
            for job in client.dequeue_many("default", 10):
                with lock:  # the dequeue's `now` is the lease expiry minus job_expire_interval
                    times.setdefault(job.queue_id, []).append(job.expires_at - 60_000)
            time.sleep(0.005)

    threads = [threading.Thread(target=consume, args=(c,)) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(times) == sorted(f"q{i}" for i in range(queues))
    for queue_id, stamps in times.items():
        stamps.sort()
        assert len(stamps) == per_queue
        assert all(b - a >= interval for a, b in zip(stamps, stamps[1:])), (queue_id, stamps)


def _run_load(make_client: Any, total: int, during: Any) -> None:
    """Producers and consumers run while `during()` changes the cluster; every job must be
    delivered and finished exactly once."""
    producer = make_client(clock=None, job_expire_interval=120_000, retry_for=30)
    consumers = [make_client(clock=None, job_expire_interval=120_000, retry_for=30) for _ in range(2)]
    delivered: List[str] = []
    finished: List[bool] = []
    lock = threading.Lock()
    produced = threading.Event()
    errors: List[BaseException] = []

    def produce() -> None:
        try:
            for start in range(0, total, 100):
                jobs = [{"queue_id": f"q{i % 200}", "job_id": f"j{i}", "payload": i, "interval": 0}
                        for i in range(start, start + 100)]
                assert producer.enqueue_many(jobs).enqueued == 100
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            produced.set()

    def consume(client: Any) -> None:
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                jobs = client.dequeue_many("default", 50)
                if jobs:
                    done = client.finish_many(jobs)
                    with lock:
                        delivered.extend(job.job_id for job in jobs)
                        finished.extend(done)
                elif produced.is_set():
                    with lock:
                        if len(delivered) >= total:
                            return
                    time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume, args=(c,)) for c in consumers]
    for thread in threads:
        thread.start()
    try:
        during()
    finally:
        for thread in threads:
            thread.join()
    assert not errors, errors
    counts = Counter(delivered)
    assert [job for job, n in counts.items() if n > 1] == []  # nothing doubled
    assert set(counts) == {f"j{i}" for i in range(total)}  # nothing lost
    assert all(finished)
    assert producer.metrics("default").queue_ids == []


@CLUSTER_TRANSPORTS
def test_resharding_while_clients_run_loses_and_doubles_nothing(make_client, redis_cluster):
    masters = redis_cluster.masters()
    tags = [f"{{sharq_server:default:{p}}}" for p in range(DEFAULT_PARTITIONS)]
    slots = sorted({redis_cluster.key_slot(tag) for tag in tags})
    source = masters[0]
    moving = [slot for slot in slots if redis_cluster.slot_owner(slot) == source][:12]
    target = masters[1]
    assert moving

    def reshard() -> None:
        time.sleep(0.1)
        redis_cluster.reshard(source, target, moving)
        time.sleep(0.1)
        redis_cluster.reshard(target, source, moving)  # and back, with the keys

    _run_load(make_client, 4000, reshard)
    assert all(redis_cluster.slot_owner(slot) == source for slot in moving)


@CLUSTER_TRANSPORTS
def test_scripts_are_loaded_again_on_each_node(make_client, redis_cluster):
    client = make_client()
    client.enqueue_many({"queue_id": f"q{i}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(100))
    for port in redis_cluster.masters():
        redis_cluster.node_client(port).script_flush()
    jobs = drain(client)
    assert len(jobs) == 100
    for port in redis_cluster.masters():
        redis_cluster.node_client(port).script_flush()
    assert all(client.finish_many(jobs))


@CLUSTER_TRANSPORTS
def test_a_waiting_dequeue_is_woken_by_an_enqueue_on_any_node(make_client):
    consumer = make_client(clock=None, wait_poll_interval=30)
    producer = make_client(clock=None)
    consumer.dequeue(timeout=0)  # subscribed before the enqueue below
    got: List[Any] = []
    thread = threading.Thread(target=lambda: got.append(consumer.dequeue(timeout=20)))
    thread.start()
    time.sleep(0.2)
    for i in range(5):  # queues of several partitions, so several nodes publish
        producer.enqueue(queue_id=f"w{i}", job_id="j", payload=i, interval=0)
    thread.join()
    assert got and got[0] is not None


@pytest.mark.parametrize("transport", ["cluster-sync", "cluster-async"])
def test_failover_loses_no_replicated_job(redis_cluster_replicas, make_client, transport):
    cluster = redis_cluster_replicas

    def replicated() -> bool:
        for node in cluster.nodes:
            if node.role == "replica":
                master = cluster.node_client(node.master_port).info("replication")["master_repl_offset"]
                if cluster.node_client(node.port).info("replication")["slave_repl_offset"] < master:
                    return False
        return True

    def kill() -> None:
        time.sleep(0.3)
        # What WAIT gives a writer: the jobs written so far are on the replicas too.
        deadline = time.monotonic() + 10
        while not replicated() and time.monotonic() < deadline:
            time.sleep(0.01)
        cluster.kill_master(0)

    def make(**settings: Any) -> Any:
        return make_client(url=cluster.url, **settings)

    # Writes acknowledged but not yet replicated when a master dies are lost with it
    # (docs/cluster-layout.md): here every write was replicated before the kill, as WAIT
    # would make sure; then no job may be lost or delivered twice.
    _run_load_failover(make, kill)


def _run_load_failover(make: Any, kill: Any) -> None:
    producer = make(clock=None, job_expire_interval=2000, retry_for=30)
    total = 1000
    jobs = [{"queue_id": f"q{i % 100}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(total)]
    assert producer.enqueue_many(jobs).enqueued == total
    kill()
    consumer = make(clock=None, job_expire_interval=2000, retry_for=30)
    delivered = Counter()
    deadline = time.monotonic() + 60
    while len(delivered) < total and time.monotonic() < deadline:
        got = consumer.dequeue_many("default", 100)
        if got:
            assert all(consumer.finish_many(got))
            delivered.update(job.job_id for job in got)
        else:
            consumer.requeue()
            time.sleep(0.05)
    assert set(delivered) == {f"j{i}" for i in range(total)}
    assert max(delivered.values()) == 1


def test_cluster_urls():
    nodes, kwargs = parse_cluster_url("redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7001")
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert kwargs == {"password": "secret", "username": "user"}
    assert parse_cluster_url("rediss+cluster://h:1")[1] == {"ssl": True}
    with pytest.raises(BadArgumentException, match="redis\\+cluster://host:port"):
        parse_cluster_url("redis+cluster://nohost")


@CLUSTER_TRANSPORTS
def test_partitions_of_a_new_queue_type_are_set_by_the_url_and_kept(make_client, redis_cluster):
    few = make_client(url=redis_cluster.url + "?partitions=3")
    few.enqueue_many({"queue_id": f"q{i}", "job_id": "j", "payload": i, "interval": 0} for i in range(60))
    tags = set()
    for port in redis_cluster.masters():
        for key in redis_cluster.node_client(port).scan_iter(match="{sharq_server:default:*}:payload"):
            tags.add(key.split(b"}")[0])
    assert len(tags) == 3
    other = make_client()  # default 64, but the type exists with 3: its count is kept
    assert len(drain(other)) == 60
    with pytest.raises(BadArgumentException, match="partitions"):
        make_client(url=redis_cluster.url + "?partitions=0")


def test_key_prefix_with_braces_is_refused(redis_cluster):
    with pytest.raises(BadArgumentException, match="hash tags"):
        Client(redis_cluster.url, key_prefix="a{b}")


def test_sharq_conf_clustered_means_the_cluster_layout(redis_cluster, tmp_path):
    redis_cluster.flushall()
    port = redis_cluster.masters()[1]
    conf = tmp_path / "sharq.conf"
    conf.write_text(f"[sharq]\njob_expire_interval = 5000\n[redis]\nhost = 127.0.0.1\nport = {port}\nclustered = true\n")
    with Client.from_config(str(conf)) as client:
        assert client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
        job = client.dequeue()
        assert job.job_id == "j" and job.expires_at > 0
        assert client.finish(job.queue_type, job.queue_id, job.job_id)
    assert sum(payload_counts(redis_cluster).values()) == 0
    redis_cluster.flushall()


@CLUSTER_TRANSPORTS
def test_metrics_are_summed_over_every_partition(make_client, clock, redis_cluster):
    clock.now = time.time_ns() // 1_000_000 // 60_000 * 60_000 + 1000  # counters expire in real time
    minute = clock.now // 60_000 * 60_000
    client = make_client()
    jobs = [{"queue_type": t, "queue_id": f"q{i % 50}", "job_id": f"j{i}", "payload": i, "interval": 0}
            for t in ("a", "b") for i in range(300)]
    assert client.enqueue_many(jobs).enqueued == 600
    assert len(client.dequeue_many("a", 200)) == 200
    metrics = client.metrics()
    assert metrics.queue_types == ["a", "b"]
    assert metrics.enqueue_counts[minute] == 600 and metrics.dequeue_counts[minute] == 200
    assert client.metrics("b").queue_ids == sorted(f"q{i}" for i in range(50))
    one = client.metrics("a", "q7")
    assert one.enqueue_counts[minute] == 6 and one.dequeue_counts[minute] + one.queue_length == 6
    assert client.queue_length("a", "q7") == one.queue_length
    expiry = (minute + 600_000) // 1000
    counters = [(node, key) for node in (redis_cluster.node_client(p) for p in redis_cluster.masters())
                for key in node.scan_iter(match="{sharq_server:*}:counters:*")]
    assert counters and all(node.expiretime(key) == expiry for node, key in counters)


def test_sharq_dropin_on_a_clustered_conf(redis_cluster, tmp_path):
    from sharq_fast import SharQ

    redis_cluster.flushall()
    conf = tmp_path / "sharq.conf"
    conf.write_text(f"[redis]\nhost = 127.0.0.1\nport = {redis_cluster.masters()[0]}\nclustered = true\n")
    sq = SharQ(str(conf))
    assert sq.enqueue(payload={"a": 1}, interval=0, job_id="j1", queue_id="q1") == {"status": "queued"}
    job = sq.dequeue()
    assert (job["status"], job["job_id"], job["payload"]) == ("success", "j1", {"a": 1})
    assert sq.finish(job_id="j1", queue_id="q1")["status"] == "success"
    redis_cluster.flushall()


@CLUSTER_TRANSPORTS
def test_calls_during_a_slot_migration_wait_out_tryagain_follow_ask_then_moved(make_client, redis_cluster):
    """A partition's slot is migrated by hand, step by step, while one client works on it:
    keys split between the nodes (TRYAGAIN: the call waits), all keys on the target while
    the slot is still migrating (ASK), the slot given to the target (MOVED)."""
    client = make_client(clock=None, job_expire_interval=60_000, retry_for=20)
    assert client.enqueue_many({"queue_id": "mq", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(4)).enqueued == 4
    tag = f"{{sharq_server:default:{partition_of('mq', DEFAULT_PARTITIONS)}}}"
    slot = redis_cluster.key_slot(tag)
    source = redis_cluster.slot_owner(slot)
    target = next(port for port in redis_cluster.masters() if port != source)
    src, dst = redis_cluster.node_client(source), redis_cluster.node_client(target)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", redis_cluster.node_id(source))
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", redis_cluster.node_id(target))

    def migrate(keys: List[bytes]) -> None:
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 10000, "KEYS", *keys)

    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    jobs_key = f"{tag}:jobs".encode()
    assert jobs_key in keys and len(keys) > 2
    migrate([jobs_key])  # the partition is split: its scripts get TRYAGAIN
    rest = [key for key in keys if key != jobs_key]
    timer = threading.Timer(0.5, migrate, args=(rest,))
    timer.start()
    try:
        first = client.dequeue()  # waits until every key is on the target, then ASK
    finally:
        timer.join()
    assert first.job_id == "j0"
    assert src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    second = client.dequeue()  # ASK again
    assert second.job_id == "j1"
    target_id = redis_cluster.node_id(target)
    for port in redis_cluster.masters():
        redis_cluster.node_client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    redis_cluster.wait_settled()
    assert client.finish_many([first, second]) == [True, True]  # MOVED
    assert sorted(job.job_id for job in drain(client)) == ["j2", "j3"]
    redis_cluster.reshard(target, source, [slot])
    assert redis_cluster.slot_owner(slot) == source


@pytest.mark.parametrize("transport", ["cluster-sync"])
def test_consumers_keep_working_through_a_failover(redis_cluster_replicas, make_client, transport):
    """A master is killed while consumers dequeue and finish: their calls are resent to the
    promoted replica, nothing fails, and no job is lost. (A dequeue or finish the dead
    master acknowledged but had not replicated is undone by the failover: that job comes
    back, by its queue or by requeue, and is delivered again: allowed here.)"""
    cluster = redis_cluster_replicas
    producer = make_client(url=cluster.url, clock=None, job_expire_interval=1500, retry_for=30)
    total = 3000
    jobs = [{"queue_id": f"q{i % 150}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(total)]
    assert producer.enqueue_many(jobs).enqueued == total
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # what WAIT would make sure of: the jobs are on the replicas
        offsets = [(cluster.node_client(n.master_port).info("replication")["master_repl_offset"],
                    cluster.node_client(n.port).info("replication")["slave_repl_offset"])
                   for n in cluster.nodes if n.role == "replica"]
        if all(master <= replica for master, replica in offsets):
            break
        time.sleep(0.01)
    delivered: Counter = Counter()
    errors: List[BaseException] = []
    stop = threading.Event()

    def consume() -> None:
        client = make_client(url=cluster.url, clock=None, job_expire_interval=1500, retry_for=30)
        try:
            while not stop.is_set():
                got = client.dequeue_many("default", 10)
                if got:
                    client.finish_many(got)
                    delivered.update(job.job_id for job in got)
                else:
                    client.requeue()
                    time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    cluster.kill_master(0)
    assert len(delivered) < total  # the consumers were still at work
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(delivered) < total or producer.metrics("default").queue_ids):
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert set(delivered) == {f"j{i}" for i in range(total)}
    assert producer.metrics("default").queue_ids == []


def test_bench_on_a_cluster_reports_each_shard(redis_cluster, tmp_path, capsys):
    from sharq_fast.cli import main

    redis_cluster.flushall()
    out = tmp_path / "out"
    code = main(["bench", "--url", redis_cluster.url, "--n", "300", "--queues", "30", "--batch", "100",
                 "--cores", "c", "--no-scaling", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Redis Cluster at" in printed and "shard load" in printed
    document = json.loads((out / "bench.json").read_text())
    workload = [row for row in document["results"] if row["case"] == "workload"]
    assert {(row["mode"], row["op"]) for row in workload} == {
        (mode, op) for mode in ("single", "batch") for op in ("enqueue", "dequeue", "finish")
    }
    assert all(row["jobs"] == 300 and row["server_us_per_job"] > 0 for row in workload)
    shards = document["shards"]
    assert len(shards) == 3 and sum(row["jobs"] for row in shards) == 300
    assert sum(len(redis_cluster.node_client(p).keys("*")) for p in redis_cluster.masters()) == 0  # cleaned up


def test_stats_on_a_cluster(redis_cluster, capsys):
    from sharq_fast.cli import main

    redis_cluster.flushall()
    with Client(redis_cluster.url) as client:
        for i in range(3):
            client.enqueue(queue_type="sms", queue_id="q1", job_id=f"j{i}", payload={"i": i}, interval=0)
        client.enqueue(queue_type="sms", queue_id="q2", job_id="x", payload=1, interval=0)
        assert client.dequeue("sms") is not None
    assert main(["stats", "--url", redis_cluster.url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_types"] == ["sms"]
    assert sum(data["enqueue_counts"].values()) == 4 and sum(data["dequeue_counts"].values()) == 1
    assert main(["stats", "sms", "--url", redis_cluster.url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_ids"] == ["q1", "q2"] and sum(data["queue_lengths"].values()) == 3
    assert main(["stats", "sms", "q1", "--url", redis_cluster.url]) == 0
    assert "queue length" in capsys.readouterr().out
    redis_cluster.flushall()


def test_clients_take_redis_py_cluster_clients(redis_cluster):
    import asyncio

    import redis.asyncio.cluster
    import redis.cluster

    from sharq_fast import AsyncClient

    redis_cluster.flushall()
    host, port = redis_cluster.startup_nodes[0]
    sync_cluster = redis.cluster.RedisCluster(host=host, port=port)
    with Client(sync_cluster) as client:
        assert client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
    sync_cluster.close()

    async def run() -> None:
        cluster = redis.asyncio.cluster.RedisCluster(host=host, port=port)
        async with AsyncClient(cluster) as client:
            job = await client.dequeue()
            assert job is not None and job.job_id == "j"
            assert await client.finish_many([job]) == [True]
        await cluster.aclose()

    asyncio.run(run())
    redis_cluster.flushall()


# -- fail_many: the dead-letter type is in other slots ------------------------------------------


@CLUSTER_TRANSPORTS
def test_fail_many_dead_letters_across_partitions(make_client, redis_cluster):
    client = make_client()
    jobs = [{"queue_id": f"q{i}", "job_id": f"j{i}", "payload": {"n": i}, "interval": 0, "requeue_limit": 0}
            for i in range(200)]
    jobs += [{"queue_id": f"q{i}", "job_id": f"r{i}", "payload": i, "interval": 0, "requeue_limit": 1}
             for i in range(100)]
    client.enqueue_many(jobs)
    taken = drain(client)
    outcomes = client.fail_many(taken, dead_letter="dead", chunk_size=7)
    assert Counter(outcomes) == Counter({FailOutcome.DEAD_LETTERED: 200, FailOutcome.RETRIED: 100})
    dead = drain(client, "dead")
    assert sorted((job.queue_id, job.job_id, job.payload["n"]) for job in dead) == sorted(
        (f"q{i}", f"j{i}", i) for i in range(200)
    )
    assert sorted(job.job_id for job in drain(client)) == sorted(f"r{i}" for i in range(100))
    assert sum(payload_counts(redis_cluster).values()) == 300  # 200 in "dead", 100 retried
    assert client.metrics().queue_types == ["dead", "default"]


@pytest.mark.parametrize("transport", ["cluster-sync"])
def test_a_refused_dead_letter_enqueue_leaves_the_job_held(make_client, redis_cluster, transport):
    client = make_client()
    client.enqueue(queue_id="q1", job_id="j1", payload="p", interval=0, requeue_limit=0)
    job = client.dequeue()
    store = redis_cluster.client()
    client.enqueue(queue_type="dead", queue_id="other", job_id="x", payload=1, interval=0)  # registers "dead"
    p = partition_of("q1", DEFAULT_PARTITIONS)
    bad_key = f"{{sharq_server:dead:{p}}}:jobs"
    store.delete(f"{{sharq_server:dead:{p}}}:seq")  # a partition not made yet: its keys are checked
    store.set(bad_key, "not SharQ's")
    with pytest.raises(BatchError) as info:
        client.fail(job, dead_letter="dead")
    assert info.value.refused == [0]
    assert client.extend(job, 1000) is True  # still held: the caller may fail it again
    store.delete(bad_key)
    assert client.fail(job, dead_letter="dead") is FailOutcome.DEAD_LETTERED
    assert sorted(j.job_id for j in drain(client, "dead")) == ["j1", "x"]
    store.close()


@pytest.mark.parametrize("transport", ["cluster-sync"])
def test_a_client_dying_between_dead_letter_and_discard_loses_nothing(make_client, clock, transport):
    """The steps of a cluster fail_many with dead_letter, stopped after the enqueue into the
    dead-letter type: the job is there, and still active in its own type, where the requeuer
    discards it once its lease ends."""
    from sharq_fast import _ops_cluster

    client = make_client()
    client.enqueue(queue_id="q1", job_id="j1", payload={"a": 1}, interval=0, requeue_limit=0)
    job = client.dequeue()
    s = client.settings

    def first_two_steps():
        head = ("sharq_server:.wake:default", s.job_expire_interval, clock.now, 0, 1)
        held = yield from _ops_cluster._job_ref_calls(s, "fail", [job], 100, True, head)
        assert isinstance(held[0], bytes)
        refused = yield from _ops_cluster._dead_letter(s, "dead", [job], held, 100)
        assert not refused

    client._run(first_two_steps())
    assert client.dequeue("dead").payload == {"a": 1}
    clock.advance(client.job_expire_interval)
    result = client.requeue()
    assert [(j.job_id, j.payload) for j in result.discarded] == [("j1", {"a": 1})]
    assert client.fail(job) is FailOutcome.LOST
