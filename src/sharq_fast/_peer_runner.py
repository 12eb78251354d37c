"""The benchmark workload through Plivo's sharq 1.3.0: run by path with the python of the
peer virtualenv (see _peer.py), never imported. It must not import sharq_fast.

Reads a JSON spec on stdin, writes a JSON answer on stdout, a progress bar on stderr.
spec: {"config": path, "queue_type": str, "mode": "workload" | "scaling" | "consume",
       workload: "n", "queues", "payload" (a dict; each job gets it with "n": i), "ops";
       scaling:  "count", "budget" (seconds);
       consume:  "count", "budget", "handler" ("noop" | "sleep1ms"): the consumer loop a
                 sharq 1.3.0 user writes over jobs already queued}
answer: {"versions": {...}, "results": [{"op", "jobs", "seconds", "client_cpu",
         "server_cpu"}]}
"""

import sys
import os

# Run by path, this file's folder (the sharq_fast package) would come first on sys.path and
# its modules (types.py, config.py...) would shadow the standard library's. Drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import json  # noqa: E402
import time  # noqa: E402


def _server_cpu(conn):
    info = conn.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class _Progress(object):
    def __init__(self, label, total):
        self.label, self.total, self.last, self.tty = label, max(total, 1), 0.0, sys.stderr.isatty()

    def update(self, done, force=False):
        now = time.monotonic()
        if not self.tty or (not force and now - self.last < 0.1):
            return
        self.last = now
        filled = int(30 * done / self.total)
        sys.stderr.write("\r  %-34s [%s%s] %3d%%" % (self.label[:34], "#" * filled, "." * (30 - filled), 100 * done // self.total))
        sys.stderr.flush()

    def close(self, note="done"):
        if self.tty:
            self.update(self.total, force=True)
            sys.stderr.write(" %s\n" % note)
        else:
            sys.stderr.write("  %s: %s\n" % (self.label, note))
        sys.stderr.flush()


def _measure(sq, label, op, jobs, work):
    conn = sq.redis_client()
    progress = _Progress(label, jobs)
    server0 = _server_cpu(conn)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = work(progress)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server = _server_cpu(conn) - server0
    progress.close("{:,.0f} jobs/s".format(done / wall) if wall > 0 else "done")
    return {"op": op, "jobs": done, "seconds": wall, "client_cpu": cpu, "server_cpu": server}


def workload(sq, spec):
    queue_type, n, queues, template = spec["queue_type"], spec["n"], spec["queues"], spec["payload"]
    label = spec.get("label", "sharq 1.3.0")
    results, taken = [], []

    def enqueue(progress):
        for i in range(n):
            payload = dict(template)
            payload["n"] = i
            sq.enqueue(payload, 0, "j%d" % i, "q%d" % (i % queues), queue_type)
            if i % 512 == 0:
                progress.update(i)
        return n

    def dequeue(progress):
        for i in range(n):
            job = sq.dequeue(queue_type)
            if job["status"] != "success":
                raise SystemExit("sharq 1.3.0 dequeue found no job after %d of %d" % (i, n))
            taken.append((job["job_id"], job["queue_id"]))
            if i % 512 == 0:
                progress.update(i)
        return n

    def finish(progress):
        for i, (job_id, queue_id) in enumerate(taken):
            if sq.finish(job_id, queue_id, queue_type)["status"] != "success":
                raise SystemExit("sharq 1.3.0 finish failed for %s" % job_id)
            if i % 512 == 0:
                progress.update(i)
        return len(taken)

    work = {"enqueue": enqueue, "dequeue": dequeue, "finish": finish}
    for op in spec.get("ops", ["enqueue", "dequeue", "finish"]):
        results.append(_measure(sq, "%s single %s" % (label, op), op, n, work[op]))
    return results


def scaling(sq, spec):
    queue_type, count, budget = spec["queue_type"], spec["count"], spec.get("budget", 60.0)

    def dequeue(progress):
        deadline = time.perf_counter() + budget
        for i in range(count):
            if sq.dequeue(queue_type)["status"] != "success":
                raise SystemExit("sharq 1.3.0 dequeue found no ready queue")
            progress.update(i + 1)
            if time.perf_counter() > deadline:
                return i + 1
        return count

    return [_measure(sq, spec.get("label", "sharq 1.3.0 scaling"), "dequeue", count, dequeue)]


def consume(sq, spec):
    """dequeue, handler, finish, one job at a time, until `count` jobs or `budget` s."""
    queue_type, count, budget = spec["queue_type"], spec["count"], spec.get("budget", 60.0)
    pause = 0.001 if spec.get("handler") == "sleep1ms" else 0.0

    def loop(progress):
        deadline = time.perf_counter() + budget
        for i in range(count):
            job = sq.dequeue(queue_type)
            if job["status"] != "success":
                raise SystemExit("sharq 1.3.0 dequeue found no job after %d of %d" % (i, count))
            if pause:
                time.sleep(pause)
            if sq.finish(job["job_id"], job["queue_id"], queue_type)["status"] != "success":
                raise SystemExit("sharq 1.3.0 finish failed for %s" % job["job_id"])
            if i % 256 == 0:
                progress.update(i)
            if time.perf_counter() > deadline:
                return i + 1
        return count

    return [_measure(sq, spec.get("label", "sharq 1.3.0 loop"), "consume", count, loop)]


def main():
    spec = json.load(sys.stdin)
    from importlib import metadata

    import msgpack
    import redis
    from sharq import SharQ

    sq = SharQ(spec["config"])
    runs = {"workload": workload, "scaling": scaling, "consume": consume}
    answer = {
        "versions": {
            "sharq": metadata.version("sharq"),
            "msgpack": ".".join(map(str, msgpack.version)),
            "msgpack_impl": msgpack.Packer.__module__,
            "redis": redis.__version__,
            "python": sys.version.split()[0],
        },
        "results": runs[spec["mode"]](sq, spec),
    }
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
