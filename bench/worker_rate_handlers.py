"""Handlers of bench/worker_rates.py."""

import asyncio
import time


def noop(job):
    pass


async def anoop(job):
    pass


def wait_1ms(job):
    time.sleep(0.001)


async def await_1ms(job):
    await asyncio.sleep(0.001)
