"""The short crash and restart soak (issue 14; the long one: README "Soak"): 8 consumer
processes, one SIGKILLed and replaced every 3 s, Redis (AOF, appendfsync always) restarted
every 12 s, producers with enqueue_many into queues with and without an interval. Runs
``python -m sharq_fast soak`` in a subprocess (its own private redis-server) and reads
the checks' figures: every job finished exactly once, none lost, nothing left in Redis,
redeliveries only after a SIGKILL or an expired lease, no interval violated."""

import json
import subprocess
import sys

import pytest

from sharq_fast._soak_check import check

pytestmark = [pytest.mark.compiled_core_only, pytest.mark.single_node]


def _records(tmp_path, producer, consumers, killed=()):
    (tmp_path / "producer-0.log").write_text("".join(line + "\n" for line in producer))
    for pid, lines in consumers.items():
        (tmp_path / f"consumer-{pid}.log").write_text("".join(line + "\n" for line in lines))
    (tmp_path / "killed").write_text("".join(f"{pid}\n" for pid in killed))
    return str(tmp_path)


def test_the_checks_catch_what_they_are_for(tmp_path):
    """Records with a double finish, a lost job, an early redelivery, an interval broken by
    first deliveries and something left in Redis: each is reported (the checks can fail)."""
    expire = 1000
    producer = ["E j1 z1", "E j2 z1", "E j3 z1", "E j4 i1", "E j5 i1", "E j6 z1", "E j7 z1"]
    consumers = {
        10: ["D j1 z1 2000", "F j1 2000 1", "D j2 z1 2000", "D j3 z1 2000", "X j3 3500", "D j4 i1 2000",
             "D j5 i1 2010", "F j4 2000 1", "F j5 2010 1", "D j6 z1 2000", "f j6 2000", "D j7 z1 2000"],
        11: ["D j1 z1 3500", "F j1 3500 1",  # j1 finished twice; j2 never finished (lost)
             "D j3 z1 3400", "F j3 3400 1",  # j3 redelivered at 2400 while pid 10's lease ran to 3500
             "D j7 z1 3100", "F j7 3100 1"],  # j7: pid 10's lease 2000 <= 2100: fine
        12: [],
    }
    result = check(_records(tmp_path, producer, consumers), expire, {"z1": 0, "i1": 20}, {"payloads": 1})
    problems = "\n".join(result["problems"])
    assert "job j1 finished 2 times" in problems
    assert "job j2 (queue z1) lost" in problems
    assert "job j6 (queue z1) lost" in problems  # finish sent, no answer, but pid 10 was not killed
    assert "job j3 redelivered at 2400 while pid 10's lease ran to 3500" in problems
    assert "queue i1: two dequeues 10 ms apart, interval 20 ms" in problems
    assert "left in Redis at the end: 1 payloads" in problems
    assert "j7" not in problems
    assert len(result["problems"]) == 6, problems
    # The same with pid 10 killed: j6's finish answer died with it, j3's redelivery is expected.
    (tmp_path / "killed").write_text("10\n")
    result = check(str(tmp_path), expire, {"z1": 0, "i1": 20}, {})
    problems = "\n".join(result["problems"])
    assert "j6" not in problems and "j3" not in problems and result["figures"]["finished_outcome_unrecorded"] == 1


@pytest.mark.slow
def test_short_soak_under_kills_and_redis_restarts(tmp_path):
    out = tmp_path / "soak.json"
    argv = [sys.executable, "-m", "sharq_fast", "soak", "--jobs", "60000", "--duration", "20", "--consumers", "8",
            "--kill-every", "3", "--restart-every", "12", "--expire-ms", "2000", "--slow-every", "3000",
            "--drain-timeout", "120", "--json", str(out)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    report = proc.stdout.decode()
    assert proc.returncode == 0, report + proc.stderr.decode()[-5000:]
    result = json.loads(out.read_text())
    f = result["figures"]
    assert result["problems"] == []
    assert f["enqueued"] + f["enqueue_outcome_unknown"] == 60000
    assert f["finished_exactly_once"] + f["finished_outcome_unrecorded"] == f["enqueued"]
    assert f["lost"] == 0 and f["double_finishes"] == 0 and f["interval_violations"] == 0
    assert f["consumers_killed"] >= 5 and f["redis_restarts"] >= 1
    assert f["interval_dequeues_checked"] > 0
    print(report)
