"""Handlers for the `sharq-fast worker` tests (tests/test_worker.py), imported by the worker
subprocess as ``worker_handlers:NAME``. Each appends ``start JOB PID`` and ``done JOB PID``
lines to the file named by $WORKER_TEST_LOG (O_APPEND writes: lines of several processes
do not interleave); $WORKER_TEST_SLEEP makes each job take that many seconds."""

import asyncio
import os
import time

NOT_CALLABLE = 42


def _log(what: str, job_id: str) -> None:
    fd = os.open(os.environ["WORKER_TEST_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{what} {job_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def handle(job):
    """Record the job; sleep $WORKER_TEST_SLEEP s in between."""
    _log("start", job.job_id)
    time.sleep(float(os.environ.get("WORKER_TEST_SLEEP", "0")))
    _log("done", job.job_id)


async def handle_async(job):
    """handle(), as a coroutine function."""
    _log("start", job.job_id)
    await asyncio.sleep(float(os.environ.get("WORKER_TEST_SLEEP", "0")))
    _log("done", job.job_id)


def fail(job):
    """Record the job and raise (the worker fails it: retried, then dead-lettered)."""
    _log("start", job.job_id)
    raise ValueError(f"cannot handle {job.job_id}")
