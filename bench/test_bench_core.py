"""Compiled vs pure core, side by side (pytest-benchmark; not part of the test suite):

    .venv/bin/python -m pytest bench/test_bench_core.py -p no:cacheprovider
"""

import pytest

from sharq_fast import _core_py

try:
    from sharq_fast import _core_c
except ImportError:
    _core_c = None

CORES = [pytest.param(_core_c, id="compiled", marks=pytest.mark.skipif(_core_c is None, reason="not built")),
         pytest.param(_core_py, id="pure")]
JOBS = [
    {"queue_id": f"queue{i % 20}", "job_id": f"job-{i}", "payload": {"user": i, "message": "hello", "ok": True},
     "interval": 1000}
    for i in range(1000)
]
REPLY = []
for _i in range(1000):
    REPLY += [b"queue%d" % (_i % 20), b"job-%d" % _i, _core_py.encode_payload({"user": _i, "message": "hello", "ok": True}), 5]


@pytest.mark.parametrize("core", CORES)
def test_pack_enqueue_1000(benchmark, core):
    benchmark.group = "pack_enqueue, 1000 jobs"
    result = benchmark(core.enqueue_chunks, 1_700_000_000_000, JOBS, -1, 0, 1000)
    assert result == _core_py.enqueue_chunks(1_700_000_000_000, JOBS, -1, 0, 1000)


@pytest.mark.parametrize("core", CORES)
def test_parse_jobs_1000(benchmark, core):
    benchmark.group = "parse_jobs, 1000 jobs"
    result = benchmark(core.parse_jobs, REPLY, "default", 0, 0)
    assert len(result) == 1000
