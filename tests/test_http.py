"""sharq-fast serve in a real uvicorn process, over real HTTP: routes and status codes
beyond the golden sequence (tests/test_http_golden.py), long-poll, batch routes, auth,
limits, Prometheus, the requeuer, 200 concurrent clients, SIGTERM, several workers."""

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import httpx
import pytest
import redis

from http_helpers import ServeProcess
from sharq_fast._redis_server import RedisServer, free_port
from sharq_fast.cli import main
from sharq_fast.http._loadgen import HTTPConnection

DUPLICATE = "a job with this job_id is already queued or active in this queue"
REF_KEYS = ("queue_type", "queue_id", "job_id", "expires_at")


@pytest.fixture(autouse=True)
def core() -> None:
    """Once, not once per core: the server process picks its own core."""


@pytest.fixture(scope="module")
def server(redis_server_url: str) -> Iterator[ServeProcess]:
    # No requeuer: the tests of the requeuer and of shutdown watch its lock.
    process = ServeProcess(
        redis_server_url, "--max-body-size", "100000", "--max-wait", "10", "--max-batch", "500", "--no-requeuer"
    )
    yield process
    process.close()


@pytest.fixture
def http(server: ServeProcess, r: redis.Redis) -> Iterator[httpx.Client]:
    """A client of the module's server, on a flushed database."""
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


def enqueue(http: httpx.Client, queue_type: str, queue_id: str, job_id: str, payload: Any = None, interval: int = 0,
            **extra: Any) -> httpx.Response:
    body = {"job_id": job_id, "payload": {"n": 1} if payload is None else payload, "interval": interval, **extra}
    return http.post(f"/enqueue/{queue_type}/{queue_id}/", json=body)


# -- sharq-server's routes ----------------------------------------------------------------


def test_index_names_the_server(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, SharQ!"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-sharq-fast"]
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""


def test_enqueue_dequeue_finish_cycle(http: httpx.Client) -> None:
    assert enqueue(http, "sms", "q1", "j1", {"to": "+1", "text": "hi"}, requeue_limit=3).status_code == 201
    assert enqueue(http, "sms", "q1", "j2").status_code == 201
    response = http.get("/dequeue/sms/")
    assert response.status_code == 200
    assert response.json() == {
        "current_queue_length": 1, "job_id": "j1", "payload": {"to": "+1", "text": "hi"}, "queue_id": "q1",
        "requeues_remaining": 3, "status": "success",
    }
    assert http.post("/finish/sms/q1/j1/").json() == {"status": "success"}
    assert http.post("/finish/sms/q1/j1/").status_code == 404
    assert http.get("/dequeue/").status_code == 404  # the default queue type is empty


def test_duplicate_job_id_is_409_and_keeps_the_first(http: httpx.Client) -> None:
    assert enqueue(http, "sms", "q1", "j1", {"first": True}).status_code == 201
    response = enqueue(http, "sms", "q1", "j1", {"second": True})
    assert response.status_code == 409
    assert response.json() == {"message": DUPLICATE, "status": "failure"}
    assert http.get("/dequeue/sms/").json()["payload"] == {"first": True}


def test_max_queued_length(http: httpx.Client) -> None:
    for i in range(2):
        response = enqueue(http, "mq", "q1", f"j{i}", {"max_queued_length": 2})
        assert (response.status_code, response.json()) == (201, {"current_queue_length": i, "status": "queued"})
    full = enqueue(http, "mq", "q1", "j9", {"max_queued_length": 2})
    assert full.status_code == 429
    assert full.json() == {"current_queue_length": 2, "message": "Max queue length reached", "status": "failure"}
    assert enqueue(http, "mq", "q1", "j9", {"max_queued_length": 2.5}).status_code == 201  # a float limit works too
    assert enqueue(http, "mq", "q1", "jb", {"max_queued_length": True}).status_code == 400


def test_interval_metrics_deletequeue_deepstatus(http: httpx.Client) -> None:
    enqueue(http, "sms", "q1", "j1", interval=1000)
    assert http.post("/interval/sms/q1/", json={"interval": 50}).json() == {"status": "success"}
    assert http.post("/interval/sms/nope/", json={"interval": 50}).status_code == 404
    assert http.get("/metrics/sms/").json() == {"queue_ids": ["q1"], "status": "success"}
    queue = http.get("/metrics/sms/q1/").json()
    assert queue["queue_length"] == 1 and sum(queue["enqueue_counts"].values()) == 1
    assert list(queue["enqueue_counts"]) == sorted(queue["enqueue_counts"])  # as jsonify sorts them
    assert http.get("/metrics/").json()["queue_types"] == ["sms"]
    purge = http.request("DELETE", "/deletequeue/sms/q1/", json={"purge_all": True})
    assert purge.json() == {"message": "Successfully removed all queued calls and purged related resources", "status": "Success"}
    assert http.request("DELETE", "/deletequeue/sms/q1/").json()["status"] == "Failure"
    assert http.request("DELETE", "/deletequeue/sms/q1/", json={"purge_all": "yes"}).status_code == 400
    assert http.get("/deepstatus/").json() == {"status": "success"}


def test_bad_input_is_400_never_500(http: httpx.Client) -> None:
    cases = [
        ("POST", "/enqueue/sms/q1/", b'{"job_id": "j1", "payload": {}, "interval": 1, "requeue_limit": "x"}'),
        ("POST", "/enqueue/sms/q1/", b'{"job_id": "j1", "payload": 1e400, "interval": 1}'),
        ("POST", "/enqueue/sms/q1/", b'{"job_id": 7, "payload": {}, "interval": 1}'),
        ("POST", "/enqueue/payload/q1/", b'{"job_id": "j1", "payload": {}, "interval": 1}'),  # a reserved name
        ("POST", "/enqueue/sms/q1/", b"\xff\xfe"),
        ("POST", "/interval/sms/q1/", b"[]"),
        ("GET", "/dequeue/sms/?wait=abc", None),
        ("GET", "/dequeue/sms/?wait=-1", None),
        ("GET", "/dequeue/sms/?wait=11", None),  # over --max-wait
        ("GET", "/dequeue/" + "x" * 101 + "/", None),
        ("POST", "/enqueue/sms/q%20x/", b'{"job_id": "j1", "payload": {}, "interval": 1}'),
    ]
    for method, path, body in cases:
        response = http.request(method, path, content=body)
        assert response.status_code == 400, (path, body, response.text)
        data = response.json()
        assert data["status"] == "failure" and data["message"], data


def test_wrong_method_lists_the_allowed_ones(http: httpx.Client) -> None:
    response = http.delete("/dequeue/sms/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert http.head("/dequeue/sms/").status_code == 405  # HEAD would take a job


def test_body_too_large_is_413(http: httpx.Client) -> None:
    big = {"job_id": "j1", "payload": "x" * 200_000, "interval": 0}
    response = http.post("/enqueue/sms/q1/", json=big)
    assert response.status_code == 413
    assert response.json()["status"] == "failure"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"job_id": "j1", "interval": 0, "payload": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}'

    assert http.post("/enqueue/sms/q1/", content=chunks()).status_code == 413
    assert http.get("/metrics/sms/q1/").json()["queue_length"] == 0


def test_redis_down_is_503() -> None:
    with RedisServer() as own_redis:
        process = ServeProcess(own_redis.url, "--no-requeuer", "--retry-for", "0.5")
        try:
            own_redis.stop()
            response = httpx.get(process.url + "/deepstatus/", timeout=10)
            assert response.status_code == 503
            assert "Redis" in response.json()["message"]
            assert httpx.post(process.url + "/enqueue/sms/q1/", json={"job_id": "j", "payload": 1, "interval": 0},
                              timeout=10).status_code == 503
        finally:
            assert process.stop() == 0
            process.close()


# -- beyond sharq-server ------------------------------------------------------------------------


def test_long_poll_gets_a_job_enqueued_while_waiting(http: httpx.Client, server: ServeProcess) -> None:
    answers: List[Any] = []

    def poll() -> None:
        started = time.monotonic()
        response = httpx.get(server.url + "/dequeue/lp/?wait=5", timeout=20)
        answers.append((response.status_code, response.json(), time.monotonic() - started))

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.4)
    enqueue(http, "lp", "q1", "j1", {"late": True})
    thread.join(10)
    status, body, took = answers[0]
    assert status == 200 and body["payload"] == {"late": True}
    assert 0.3 < took < 2.5


def test_long_poll_is_woken_by_the_enqueue_not_by_polling(http: httpx.Client, server: ServeProcess) -> None:
    """A waiting dequeue is woken by the enqueue's pub/sub message, not by its next look at
    Redis (every second): its answer follows the enqueue's by milliseconds."""
    delays: List[float] = []
    with httpx.Client(base_url=server.url, timeout=20) as poller:
        poller.get("/")
        for i in range(5):
            answer: Any = {}

            def poll() -> None:
                answer["response"] = poller.get("/dequeue/wake/?wait=10")
                answer["at"] = time.monotonic()

            thread = threading.Thread(target=poll)
            thread.start()
            time.sleep(0.3 + 0.1 * i)  # at different points of the one-second poll cycle
            enqueue(http, "wake", "q1", f"j{i}")
            enqueued = time.monotonic()
            thread.join(15)
            assert answer["response"].status_code == 200
            delays.append(answer["at"] - enqueued)
            assert http.post(f"/finish/wake/q1/j{i}/").status_code == 200
    assert sorted(delays)[2] < 0.2, delays  # polling would make the median 0.3-0.7 s


def test_long_poll_times_out_with_404(http: httpx.Client) -> None:
    started = time.monotonic()
    response = http.get("/dequeue/lp/?wait=0.6")
    assert response.status_code == 404 and response.json() == {"status": "failure"}
    assert 0.55 < time.monotonic() - started < 3


def test_batch_enqueue_answers_per_job(http: httpx.Client) -> None:
    jobs = [
        {"queue_type": "b", "queue_id": "q1", "job_id": "j1", "payload": {"n": 1}, "interval": 0},
        {"queue_type": "b", "queue_id": "q1", "job_id": "j1", "payload": {"n": 2}, "interval": 0},  # duplicate
        {"queue_type": "b", "queue_id": "q1", "job_id": "bad id", "payload": {}, "interval": 0},
        {"queue_id": "q2", "job_id": "j2", "payload": [1, 2], "interval": 0, "requeue_limit": 1},  # default type
        "not a job",
        {"queue_type": "b", "queue_id": "q3", "job_id": "j3", "payload": {}, "interval": 0, "extra": 1},
    ]
    response = http.post("/batch/enqueue/", json={"jobs": jobs})
    assert response.status_code == 200
    body = response.json()
    assert body["enqueued"] == 2 and body["status"] == "success"
    assert body["results"][0] == {"status": "queued"}
    assert body["results"][1] == {"code": 409, "message": DUPLICATE, "status": "failure"}
    assert body["results"][2] == {"code": 400, "message": "`job_id` has an invalid value.", "status": "failure"}
    assert body["results"][3] == {"status": "queued"}
    assert body["results"][4]["code"] == 400 and body["results"][5]["code"] == 400
    # The bare array works too.
    assert http.post("/batch/enqueue/", json=[jobs[0]]).json()["results"] == [{"code": 409, "message": DUPLICATE, "status": "failure"}]


def test_batch_dequeue_and_finish(http: httpx.Client) -> None:
    jobs = [{"queue_type": "b", "queue_id": f"q{i % 5}", "job_id": f"j{i}", "payload": {"i": i}, "interval": 0} for i in range(20)]
    assert http.post("/batch/enqueue/", json={"jobs": jobs}).json()["enqueued"] == 20
    first = http.get("/batch/dequeue/b/?count=15").json()
    assert first["status"] == "success" and len(first["jobs"]) == 15
    assert set(first["jobs"][0]) == {"expires_at", "job_id", "payload", "queue_id", "queue_type", "requeues_remaining"}
    rest = http.post("/batch/dequeue/b/?count=100").json()["jobs"]
    assert len(rest) == 5
    taken = first["jobs"] + rest
    assert sorted(j["job_id"] for j in taken) == sorted(j["job_id"] for j in jobs)
    assert http.get("/batch/dequeue/b/").json() == {"jobs": [], "status": "success"}
    to_finish = [{"queue_type": j["queue_type"], "queue_id": j["queue_id"], "job_id": j["job_id"]} for j in taken]
    to_finish += [{"queue_type": "b", "queue_id": "q0", "job_id": "j0"}, {"queue_id": "q0", "job_id": "bad id"}]
    done = http.post("/batch/finish/", json={"jobs": to_finish}).json()
    assert done["finished"] == 20
    assert done["results"][:20] == [{"status": "success"}] * 20
    assert done["results"][20] == {"code": 404, "status": "failure"}
    assert done["results"][21]["code"] == 400


def test_batch_leases_extend_release_and_lease_checked_finish(http: httpx.Client, r: redis.Redis) -> None:
    jobs = [{"queue_type": "l", "queue_id": "q", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(4)]
    assert http.post("/batch/enqueue/", json=jobs).json()["enqueued"] == 4
    taken = http.get("/batch/dequeue/l/?count=4").json()["jobs"]
    assert [j["job_id"] for j in taken] == ["j0", "j1", "j2", "j3"]
    refs = [{key: j[key] for key in ("queue_type", "queue_id", "job_id", "expires_at")} for j in taken]
    leases = [int(score) for _, score in r.zrange("sharq_server:l:active", 0, -1, withscores=True)]
    assert sorted(ref["expires_at"] for ref in refs) == sorted(leases)  # the dequeue's leases
    # extend j0 and j1: new leases, the old ones no longer act.
    extended = http.post("/batch/extend/", json={"ms": 3_600_000, "jobs": refs[:2]}).json()
    assert extended["extended"] == 2 and all(e["expires_at"] > refs[0]["expires_at"] for e in extended["results"])
    stale = http.post("/batch/finish/", json={"jobs": [refs[0]]}).json()
    assert stale["finished"] == 0 and stale["results"][0]["code"] == 404
    fresh = dict(refs[0], expires_at=extended["results"][0]["expires_at"])
    assert http.post("/batch/finish/", json=[fresh]).json()["finished"] == 1
    # release j2: back at the front of its queue, its requeue count untouched.
    released = http.post("/batch/release/", json={"jobs": [refs[2], dict(refs[2], job_id="nope")]}).json()
    assert released["released"] == 1 and released["results"][1]["code"] == 404
    assert r.lindex("sharq_server:l:q", 0) == b"j2"
    # Mistakes answer per job (or 400 for the request).
    bad = http.post("/batch/extend/", json={"ms": 1000, "jobs": [{"queue_id": "q", "job_id": "j3"}, refs[3], "x"]}).json()
    assert [e.get("code") for e in bad["results"]] == [400, None, 400] and "expires_at" in bad["results"][0]["message"]
    assert http.post("/batch/extend/", json={"jobs": [refs[3]]}).status_code == 400  # no ms
    assert http.post("/batch/extend/", json={"ms": 0, "jobs": [refs[3]]}).status_code == 400
    assert http.post("/batch/release/", json=[dict(refs[3], payload=3)]).json()["results"][0]["code"] == 400
    assert http.post("/batch/finish/", json=[refs[3]]).json()["finished"] == 0  # extended above: a new lease
    assert http.post("/batch/finish/", json=[dict(refs[3], expires_at=bad["results"][1]["expires_at"])]).json()["finished"] == 1


def test_batch_fail_retries_discards_and_dead_letters(http: httpx.Client, r: redis.Redis) -> None:
    jobs = [{"queue_type": "f", "queue_id": "q", "job_id": "again", "payload": 1, "interval": 0, "requeue_limit": 5},
            {"queue_type": "f", "queue_id": "q2", "job_id": "done", "payload": {"x": 2}, "interval": 0,
             "requeue_limit": 0}]
    assert http.post("/batch/enqueue/", json=jobs).json()["enqueued"] == 2
    taken = http.get("/batch/dequeue/f/?count=2").json()["jobs"]
    refs = sorted(({key: j[key] for key in REF_KEYS} for j in taken), key=lambda ref: ref["job_id"])
    answer = http.post("/batch/fail/", json={"dead_letter": "dead", "jobs": [*refs, dict(refs[0], job_id="nope"), "x"]})
    assert answer.json() == {
        "failed": 2,
        "results": [
            {"outcome": "retried", "status": "success"},
            {"outcome": "dead_lettered", "status": "success"},
            {"code": 404, "message": "the job is not active under this lease", "status": "failure"},
            {"code": 400, "message": "a job must be a JSON object", "status": "failure"},
        ],
        "status": "success",
    }
    assert r.hget("sharq_server:f:q:requeues_remaining", "again") == b"4"  # one requeue counted
    dead = http.get("/batch/dequeue/dead/").json()["jobs"]
    assert [(j["queue_id"], j["job_id"], j["payload"]) for j in dead] == [("q2", "done", {"x": 2})]
    # With a backoff, as a bare array, and mistakes.
    again = http.get("/batch/dequeue/f/").json()["jobs"][0]
    ref = {key: again[key] for key in REF_KEYS}
    assert http.post("/batch/fail/", json=[ref]).json()["results"] == [{"outcome": "retried", "status": "success"}]
    again = http.get("/batch/dequeue/f/").json()["jobs"][0]
    ref = {key: again[key] for key in REF_KEYS}
    own = http.post("/batch/fail/", json={"dead_letter": "f", "jobs": [ref]}).json()["results"][0]
    assert own["code"] == 400 and "own queue type" in own["message"]
    assert http.post("/batch/fail/", json={"backoff_ms": -1, "jobs": [ref]}).status_code == 400
    assert http.post("/batch/fail/", json={"dead_letter": "a:b", "jobs": [ref]}).status_code == 400
    assert http.post("/batch/fail/", json={"backoff_ms": 60_000, "jobs": [ref]}).json()["failed"] == 1
    assert r.zscore("sharq_server:f:active", "q:again") > ref["expires_at"]  # held for the backoff
    metrics = http.get("/prometheus/").text
    assert 'sharq_fast_jobs_total{event="failed"} 4' in metrics


def test_batch_limits_and_long_poll(http: httpx.Client, server: ServeProcess) -> None:
    too_many = [{"queue_id": "q", "job_id": f"j{i}", "payload": 1, "interval": 0} for i in range(501)]
    assert http.post("/batch/enqueue/", json=too_many).status_code == 400  # --max-batch 500
    assert http.get("/batch/dequeue/b/?count=0").status_code == 400
    assert http.get("/batch/dequeue/b/?count=501").status_code == 400
    assert http.post("/batch/finish/", json={"jobs": "x"}).status_code == 400
    answers: List[Any] = []
    thread = threading.Thread(target=lambda: answers.append(httpx.get(server.url + "/batch/dequeue/bw/?count=10&wait=5", timeout=20)))
    thread.start()
    time.sleep(0.3)
    enqueue(http, "bw", "q1", "j1")
    thread.join(10)
    assert [j["job_id"] for j in answers[0].json()["jobs"]] == ["j1"]


def test_prometheus(http: httpx.Client) -> None:
    enqueue(http, "p", "q1", "j1")
    http.get("/dequeue/p/")
    response = http.get("/prometheus/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'sharq_fast_http_requests_total{route="enqueue",code="201"}' in text
    assert "sharq_redis_up 1" in text
    assert "sharq_queue_types 1" in text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(lines["sharq_enqueues_10m"]) >= 1
    assert int(lines['sharq_fast_jobs_total{event="dequeued"}']) >= 1


def test_requeuer_runs_in_the_server(redis_server_url: str, r: redis.Redis) -> None:
    process = ServeProcess(redis_server_url, "--job-expire-interval", "200")
    try:
        url = process.url
        httpx.post(url + "/enqueue/rq/q1/", json={"job_id": "j1", "payload": {}, "interval": 0, "requeue_limit": 1})
        assert httpx.get(url + "/dequeue/rq/").json()["requeues_remaining"] == 1
        deadline = time.monotonic() + 5
        while (response := httpx.get(url + "/dequeue/rq/")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert response.status_code == 200 and response.json()["requeues_remaining"] == 0  # requeued once
        assert r.get("sharq:requeue_lock:sharq_server") is not None  # the prefix-scoped lock
    finally:
        assert process.stop() == 0
        process.close()
    assert r.get("sharq:requeue_lock:sharq_server") is None  # released on shutdown


# -- auth -------------------------------------------------------------------------------------


def test_auth_token_and_basic_auth(redis_server_url: str, r: redis.Redis) -> None:
    process = ServeProcess(redis_server_url, "--basic-auth", "ops:s3cret", env={"SHARQ_FAST_AUTH_TOKEN": "tok-123"})
    try:
        url = process.url + "/metrics/"
        missing = httpx.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="sharq", Basic realm="sharq"'
        assert missing.json()["status"] == "failure"
        assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer tok-123"}).status_code == 200
        assert httpx.get(url, headers={"authorization": "bearer tok-123"}).status_code == 200  # scheme: any case
        assert httpx.get(url, auth=("ops", "s3cret")).status_code == 200
        assert httpx.get(url, auth=("ops", "nope")).status_code == 401
        assert httpx.get(url, headers={"authorization": "Basic !!!"}).status_code == 401
        assert httpx.get(process.url + "/", headers={"authorization": "Bearer tok-123"}).status_code == 200
        assert httpx.get(process.url + "/").status_code == 401  # every route, the index too
    finally:
        process.close()


def test_config_file_sets_port_auth_and_prefix(redis_server_url: str, r: redis.Redis, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server_url)
    kwargs = client.connection_pool.connection_kwargs
    port = free_port()
    conf = tmp_path / "sharq.conf"
    conf.write_text(
        "[sharq]\njob_expire_interval : 1000 ; ms\njob_requeue_interval : 1000\ndefault_job_requeue_limit : -1\n"
        "enable_requeue_script : false\n\n"
        f"[sharq-server]\nhost : 127.0.0.1\nport : {port}\nworkers : 1 ; optional\nauth_token : from-config\n\n"
        f"[redis]\ndb : {kwargs.get('db', 0)}\nkey_prefix : confprefix\nconn_type : tcp_sock\n"
        f"host : {kwargs['host']}\nport : {kwargs['port']}\n"
    )
    process = ServeProcess(redis_server_url, "--config", str(conf), port=port)
    try:
        headers = {"authorization": "Bearer from-config"}
        assert httpx.get(process.url + "/").status_code == 401
        assert httpx.post(process.url + "/enqueue/t/q/", json={"job_id": "j", "payload": 1, "interval": 0}, headers=headers).status_code == 201
        assert r.exists("confprefix:t:q")
        time.sleep(1.2)
        assert r.get("sharq:requeue_lock:confprefix") is None  # enable_requeue_script = false
    finally:
        process.close()


# -- load and lifetime ----------------------------------------------------------------------------


def test_200_concurrent_clients_lose_nothing(http: httpx.Client, server: ServeProcess, r: redis.Redis) -> None:
    """200 clients, each on its own keep-alive connection (the lean client of bench-http:
    httpx would make this test measure httpx), enqueue 3 jobs each, then all dequeue and
    finish until the queues are empty: every job comes out exactly once."""
    clients, per_client = 200, 3
    expected = {f"c{c}-j{k}" for c in range(clients) for k in range(per_client)}

    async def run() -> List[str]:
        conns = [HTTPConnection("127.0.0.1", server.port) for _ in range(clients)]
        try:
            async def produce(c: int, conn: HTTPConnection) -> None:
                for k in range(per_client):
                    body = json.dumps({"job_id": f"c{c}-j{k}", "payload": {"c": c, "k": k}, "interval": 0}).encode()
                    status, data = await conn.request("POST", f"/enqueue/load/q{c % 50}/", body)
                    assert status == 201, data

            await asyncio.gather(*(produce(c, conn) for c, conn in enumerate(conns)))
            taken: List[str] = []

            async def consume(conn: HTTPConnection) -> None:
                while True:
                    status, data = await conn.request("GET", "/dequeue/load/")
                    if status == 404:
                        return
                    job = json.loads(data)
                    status, data = await conn.request("POST", f"/finish/load/{job['queue_id']}/{job['job_id']}/")
                    assert status == 200, data
                    taken.append(job["job_id"])

            await asyncio.gather(*(consume(conn) for conn in conns))
            return taken
        finally:
            await asyncio.gather(*(conn.close() for conn in conns))

    taken = asyncio.run(run())
    assert len(taken) == len(expected) and set(taken) == expected  # each job exactly once
    assert not r.exists("sharq_server:load:active") and not r.exists("sharq_server:load")
    assert r.hlen("sharq_server:payload") == 0


def test_sigterm_ends_long_polls_and_shuts_down_cleanly(redis_server_url: str, r: redis.Redis) -> None:
    process = ServeProcess(redis_server_url)
    answers: List[Any] = []

    def poll() -> None:
        try:
            answers.append(httpx.get(process.url + "/dequeue/idle/?wait=30", timeout=40).status_code)
        except httpx.HTTPError as exc:
            answers.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(1.2)  # the requeuer holds its lock by now
    assert r.get("sharq:requeue_lock:sharq_server") is not None
    started = time.monotonic()
    status = process.stop()
    took = time.monotonic() - started
    thread.join(5)
    output = process.output()
    process.close()
    assert status == 0, output
    assert took < 5, output
    assert answers == [404]  # the long poll got its answer, not a reset connection
    assert "Application shutdown complete" in output
    assert r.get("sharq:requeue_lock:sharq_server") is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(process.url + "/", timeout=2)


def test_workers(redis_server_url: str, r: redis.Redis) -> None:
    process = ServeProcess(redis_server_url, "--workers", "2")
    try:
        for i in range(20):
            body = {"job_id": f"j{i}", "payload": i, "interval": 0}
            assert httpx.post(process.url + "/enqueue/w/q/", json=body).status_code == 201
        pids = {line.split('pid="')[1].split('"')[0] for _ in range(30)
                for line in httpx.get(process.url + "/prometheus/").text.splitlines() if line.startswith("sharq_fast_info")}
        assert len(pids) >= 1
    finally:
        assert process.stop() == 0, process.output()
        process.close()
    assert r.llen("sharq_server:w:q") == 20


def test_serve_without_redis_is_one_line(capsys: pytest.CaptureFixture) -> None:
    port = free_port()
    assert main(["serve", "--url", f"redis://127.0.0.1:{port}/0", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0]


def test_serve_bad_settings(capsys: pytest.CaptureFixture, redis_server_url: str) -> None:
    assert main(["serve", "--url", redis_server_url, "--basic-auth", "nocolon"]) == 1
    assert "USER:PASSWORD" in capsys.readouterr().err
    assert main(["serve", "--url", redis_server_url, "--max-wait", "0"]) == 1
    assert "max_wait" in capsys.readouterr().err


def test_bench_http_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["bench-http", "--no-sharq-server", "--n", "300", "--queues", "7", "--clients", "8", "--batch", "50",
                 "--workers", "1", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "sharq-fast serve         1 single dequeue+finish" in out
    document = json.loads((tmp_path / "bench-http.json").read_text())
    phases = {(row["mode"], row["phase"]) for row in document["summary"]}
    assert phases == {("single", "enqueue"), ("single", "dequeue+finish"), ("batch", "enqueue"), ("batch", "dequeue+finish")}
    assert all(result["jobs"] == 300 for result in document["results"])
