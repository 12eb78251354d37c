"""``sharq-fast compare --peers``: sharq_fast against the queue systems people choose
between (sharq 1.3.0, BullMQ, RQ, arq, SAQ, Dramatiq, Celery, Huey, taskiq).

registry.py describes the peers, envs.py builds and caches their environments, runner.py
runs the workloads through each peer's driver (drivers/) against one private
redis-server, stats.py turns the drivers' records into numbers and report.py into a
table, JSON and charts. docs/benchmarks.md explains every workload and driver.
"""
