"""What every Python driver shares: the spec, the payload, the job recorder of the worker
side, and starting/stopping a worker process. Standard library only: it runs inside each
peer's own virtualenv, next to that peer and nothing else (never sharq_fast).

Protocol (see sharq_fast/peers/runner.py): a driver is run as
``python peer_X.py '<spec JSON>'`` and prints one JSON object on its last stdout line.

The worker side records, per handled job, the time the handler started (and the enqueue
time and tenant carried in the payload) in process-local lists; the job that completes
the expected count writes them to ``SFB_RESULT`` (after its own end time is taken, so the
write is outside the measured window). Nothing is sent to Redis per job: the measurement
adds a few list appends to each handler, the same for every peer.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

#: The same payload for every peer (and the same as ``sharq-fast bench``'s); each job gets
#: it plus "n" (its number), "t" (enqueue time, latency workload), "k" (tenant, rate
#: workload) and "w": 1 on warm-up jobs.
PAYLOAD = {"to": "+14155550100", "from": "+14155550199", "text": "hello from sharq-fast bench"}

RESULT_ENV = "SFB_RESULT"
EXPECT_ENV = "SFB_EXPECT"
SLEEP_ENV = "SFB_SLEEP_MS"
DEADLINE_ENV = "SFB_DEADLINE"
URL_ENV = "SFB_URL"

# A driver run as ``peer_X.py '<spec>'`` builds its broker objects at import, like the
# worker does: give them the spec's Redis before any is built. There is no default URL
# on purpose: a driver must never reach a Redis the runner did not start.
if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
    os.environ[URL_ENV] = json.loads(sys.argv[1])["url"]


def redis_url():
    """The Redis of this run (from the spec or, in a worker, the environment)."""
    return os.environ[URL_ENV]


def spec_from_argv():
    """The run's spec: a JSON object in argv[1]."""
    return json.loads(sys.argv[1])


def emit(answer):
    """Print the answer as the last stdout line (peers may log to stdout before it)."""
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    sys.stdout.flush()


def payload(i, **extra):
    """Job number i's payload."""
    data = dict(PAYLOAD)
    data["n"] = i
    data.update(extra)
    return data


def warmup_count(jobs):
    """Jobs enqueued (and drained) before the measured ones: 2%, 20 to 2,000."""
    return max(20, min(2000, jobs // 50))


def rate_plan(spec):
    """The rate workload's jobs, tenant by tenant (each tenant's jobs back to back: the
    order in which a plain FIFO would break the per-tenant limit): the first
    `hot_tenants` tenants get `hot_jobs` jobs each, the others `cold_jobs`."""
    plan, n = [], 0
    for tenant in range(spec["tenants"]):
        count = spec["hot_jobs"] if tenant < spec["hot_tenants"] else spec["cold_jobs"]
        for _ in range(count):
            plan.append(payload(n, k="t%d" % tenant))
            n += 1
    return plan


# -- the worker side --------------------------------------------------------------------


class Recorder(object):
    """Per-job timestamps in the worker process; see the module docstring."""

    def __init__(self):
        self.path = os.environ.get(RESULT_ENV)
        self.expect = int(os.environ.get(EXPECT_ENV) or 0)
        self.sleep_s = float(os.environ.get(SLEEP_ENV) or 0) / 1000.0
        # The run's time budget: the first job to end after it writes what was done so far.
        self.deadline = float(os.environ.get(DEADLINE_ENV) or 0)
        self.lock = threading.Lock()
        self.starts, self.sent, self.tenants, self.warm = [], [], [], []
        self.ended = 0
        self.last_end = 0.0
        self.written = False

    def begin(self, data):
        """The handler starts job `data` (its payload)."""
        now = time.time()
        with self.lock:
            if len(self.starts) == 0 and self.path:
                open(self.path + ".ready", "w").close()
            self.starts.append(now)
            self.sent.append(data.get("t"))
            self.tenants.append(data.get("k"))
            self.warm.append(data.get("w", 0))

    def end(self):
        """The handler is done with a job."""
        now = time.time()
        with self.lock:
            self.ended += 1
            if now > self.last_end:
                self.last_end = now
            done = ((self.expect and self.ended >= self.expect) or (self.deadline and now > self.deadline)) and not self.written
            if done:
                self.written = True
        if done:
            self.write()

    def write(self):
        # A copy taken under the lock: when the budget ends a run, other handlers are still
        # appending (the lists must stay the same length).
        with self.lock:
            data = {
                "starts": list(self.starts), "sent": list(self.sent), "tenants": list(self.tenants),
                "warm": list(self.warm), "last_end": self.last_end, "handled": self.ended, "expected": self.expect,
                "pid": os.getpid(),
            }
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)

    def handle(self, data):
        """A synchronous handler: no-op, or a blocking 1 ms wait (time.sleep releases the
        GIL as blocking I/O does)."""
        self.begin(data)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.end()

    async def ahandle(self, data):
        """The asynchronous handler: no-op, or ``await asyncio.sleep``."""
        self.begin(data)
        if self.sleep_s:
            import asyncio

            await asyncio.sleep(self.sleep_s)
        self.end()


# -- the driver side --------------------------------------------------------------------


class Worker(object):
    """A worker process (the peer's own command, or a script), in a session of its own so
    that it and any children it forks can be stopped together."""

    def __init__(self, argv, spec, expect, sleep_ms=0, env=None, cwd=None, budget=None):
        self.result = os.path.join(spec["workdir"], "worker-result.json")
        for path in (self.result, self.result + ".ready"):
            if os.path.exists(path):
                os.unlink(path)
        full_env = dict(os.environ)
        here = os.path.dirname(os.path.abspath(__file__))
        full_env["PYTHONPATH"] = here + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update({RESULT_ENV: self.result, EXPECT_ENV: str(expect), SLEEP_ENV: str(sleep_ms), URL_ENV: spec["url"]})
        budget = spec.get("budget") if budget is None else budget
        if budget:  # drains and the rate case stop at the budget (counted from the worker's start)
            full_env[DEADLINE_ENV] = repr(time.time() + float(budget))
        full_env.update(env or {})
        self.log_path = os.path.join(spec["workdir"], "worker.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, env=full_env, cwd=cwd or here, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("the worker exited (status %s): %s" % (self.proc.returncode, self.tail()))

    def tail(self, lines=5):
        self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def wait_ready(self, timeout):
        """Wait until the worker has started a first job."""
        deadline = time.time() + timeout
        while not os.path.exists(self.result + ".ready"):
            self._check_alive()
            if time.time() > deadline:
                raise RuntimeError("the worker handled no job within %.0f s: %s" % (timeout, self.tail()))
            time.sleep(0.01)

    def wait_result(self, timeout):
        """The recorder's data once every expected job is handled."""
        deadline = time.time() + timeout
        while not os.path.exists(self.result):
            self._check_alive()
            if time.time() > deadline:
                raise RuntimeError("the worker did not handle every job within %.0f s" % timeout)
            time.sleep(0.02)
        with open(self.result) as f:
            return json.load(f)

    def stop(self):
        """SIGTERM (a warm shutdown), then SIGKILL of its whole session after 10 s."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the session (forked children)
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.wait()
        self.log.close()


def run_drain(spec, enqueue_all, start_worker, versions):
    """The drain workloads (and the enqueue one): warm-up jobs, then `jobs` jobs through
    `enqueue_all(payloads)` (timed), then a worker that handles them all.

    `start_worker(expect)` returns a started Worker. Answers the enqueue time and the
    worker's records."""
    jobs, warm = spec["jobs"], warmup_count(spec["jobs"])
    answer = {"versions": versions, "workload": spec["workload"], "jobs": jobs, "warmup": warm}
    enqueue_all([payload(i, w=1) for i in range(warm)])  # warms the producer (and later the worker)
    batch = [payload(warm + i) for i in range(jobs)]
    t0 = time.perf_counter()
    enqueue_all(batch)
    answer["enqueue_seconds"] = time.perf_counter() - t0
    if spec["workload"] == "enqueue":
        return answer
    worker = start_worker(warm + jobs)
    try:
        answer["records"] = worker.wait_result(spec["timeout"])
    finally:
        worker.stop()
    return answer


def run_rate(spec, enqueue_all, start_worker, versions):
    """The SharQ case: every tenant's jobs (rate_plan), then one worker drains them."""
    plan = rate_plan(spec)
    answer = {"versions": versions, "workload": "rate", "jobs": len(plan)}
    enqueue_all(plan)
    worker = start_worker(len(plan))
    try:
        answer["records"] = worker.wait_result(spec["timeout"])
    finally:
        worker.stop()
    return answer


def run_latency(spec, send_one, start_worker, versions, close=None):
    """End-to-end latency: a started worker, then one job at a time at a fixed rate, each
    stamped with its enqueue time; the first `warmup` ones are not counted."""
    count, warm, rate = spec["latency_jobs"], spec.get("latency_warmup", 100), float(spec["rate"])
    answer = {"versions": versions, "workload": "latency", "jobs": count, "rate": rate}
    worker = start_worker(1 + warm + count)  # (the latency run is bounded by its count and rate: no budget)
    try:
        send_one(payload(0, w=1, t=time.time()))  # a probe: the worker is up once it ran it
        worker.wait_ready(spec.get("startup_timeout", 120))
        start = time.perf_counter()
        for i in range(warm + count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            extra = {"w": 1} if i < warm else {}
            send_one(payload(1 + i, t=time.time(), **extra))
        answer["send_seconds"] = time.perf_counter() - start
        answer["records"] = worker.wait_result(spec["timeout"])
    finally:
        worker.stop()
        if close is not None:
            close()
    return answer


def main(spec, workloads):
    """Run the spec's workload with `workloads[name](spec)` and print its answer; an error
    is printed as {"error": ...} (exit status 0: the runner reports it)."""
    try:
        answer = workloads[spec["workload"]](spec)
    except KeyError as exc:
        answer = {"error": "workload %s is not supported by this driver" % exc}
    except Exception as exc:  # the runner shows it; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        answer = {"error": "%s: %s" % (type(exc).__name__, exc)}
    emit(answer)
