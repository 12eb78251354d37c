"""A consumer in a process of its own, for test_consumer's process tests.

    python consumer_process.py URL thread|async QUEUE_TYPE CONCURRENCY WORK_MS EXPIRE_MS OUT

Runs Consumer (or AsyncConsumer) in the main thread with signal handling on, until
SIGTERM/SIGINT. Each job it handles is written at once as a line "job_id" to OUT (opened
with O_APPEND; a SIGKILL loses none of the lines written); at the end, a line
"#stats <json>". Prints "ready" once the consumer runs. WORK_MS: how long a handler takes
(time.sleep or asyncio.sleep).
"""

import asyncio
import logging
import os
import sys
import time

import msgspec

from sharq_fast import AsyncClient, AsyncConsumer, Client, Consumer


def main() -> None:
    url, kind, queue_type, concurrency, work_ms, expire_ms, out = sys.argv[1:8]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    work = int(work_ms) / 1000
    options = dict(concurrency=int(concurrency), grace_period=10.0)
    settings = dict(job_expire_interval=int(expire_ms), job_requeue_interval=200)

    def record(job) -> None:
        os.write(fd, f"{job.job_id}\n".encode())

    if kind == "thread":
        client = Client(url, **settings)

        def handle(job) -> None:
            if work:
                time.sleep(work)
            record(job)

        consumer = Consumer(client, queue_type, handle, **options)
        print("ready", flush=True)
        consumer.run()
    else:
        async def run() -> None:
            client = AsyncClient(url, **settings)

            async def handle(job) -> None:
                if work:
                    await asyncio.sleep(work)
                record(job)

            consumer = AsyncConsumer(client, queue_type, handle, **options)
            print("ready", flush=True)
            await consumer.run()
            await client.close()
            globals()["consumer"] = consumer

        asyncio.run(run())
        consumer = globals()["consumer"]
    os.write(fd, b"#stats " + msgspec.json.encode(consumer.stats()) + b"\n")
    os.close(fd)


if __name__ == "__main__":
    main()
