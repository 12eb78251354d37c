"""Fork safety of the sync Client: a client used (idle connections kept, a wake-up listener
running), then the process forks. The child's calls go over connections of its own and
never read the parent's replies (nor share its reply cache); the parent keeps working."""

import json
import os
import threading
import time

import redis

from sharq_fast import Client

CALLS = 100


def job(queue_id: str, job_id: str) -> dict:
    return {"queue_type": "t", "queue_id": queue_id, "job_id": job_id, "payload": {"by": queue_id}, "interval": 0}


def calls(client: Client, who: str) -> list:
    """CALLS enqueues, each followed by queue_length: answers that tell parent and child
    apart (a reply read by the wrong process shows as a wrong length or a False)."""
    wrong = []
    for i in range(CALLS):
        if client.enqueue(**job(who, f"{who}{i}")) is not True:
            wrong.append(f"enqueue {i}")
        length = client.queue_length("t", who)
        if length != i + 1:
            wrong.append(f"length {length} after {i + 1}")
    return wrong


def child_main(client: Client, write_fd: int) -> None:
    report = {}
    parent_tokens_base = client.settings.tokens.base
    report["wrong"] = calls(client, "child")
    # A waiting dequeue: the parent's wake-up listener is not the child's.
    job_ = client.dequeue("wake", timeout=20)
    report["woken"] = job_.job_id if job_ else None
    report["own_connections"] = all(conn.pid == os.getpid() for conn in client._transport._idle)
    report["idle"] = len(client._transport._idle)
    report["own_reply_cache"] = client.settings.tokens.base != parent_tokens_base
    with os.fdopen(write_fd, "w") as out:
        out.write(json.dumps(report))


def test_client_used_then_forked(redis_server_url: str, r: redis.Redis):
    client = Client(redis_server_url, wait_poll_interval=60)
    try:
        assert client.enqueue(**job("before", "b0"))
        assert client.dequeue("nothing", timeout=0.05) is None  # starts the wake-up listener
        assert client._transport._idle and client._transport._waker is not None
        parent_cache = client.settings.tokens.base
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(read_fd)
                child_main(client, write_fd)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        # Both processes make their calls at the same time.
        wrong = calls(client, "parent")
        deadline = time.monotonic() + 30
        while client.queue_length("t", "child") < CALLS and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the child is waiting on "wake" by now (its poll would find it anyway)
        threading.Thread(target=client.enqueue, kwargs=job("w", "wake1") | {"queue_type": "wake"}).start()
        with os.fdopen(read_fd) as answer:
            report = json.loads(answer.read() or "{}")
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, report
        assert report == {"wrong": [], "woken": "wake1", "own_connections": True, "idle": report["idle"],
                          "own_reply_cache": True}
        assert report["idle"] >= 1
        assert wrong == []
        # The parent keeps working, on its own connections and reply cache.
        assert client.settings.tokens.base == parent_cache
        assert client.queue_length("t", "parent") == CALLS
        assert client.queue_length("t", "child") == CALLS
        assert client.dequeue("t").queue_id == "before"
        assert client.dequeue("nothing", timeout=0.05) is None
    finally:
        client.close()
