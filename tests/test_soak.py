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

pytestmark = [pytest.mark.slow, pytest.mark.compiled_core_only, pytest.mark.single_node]


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
