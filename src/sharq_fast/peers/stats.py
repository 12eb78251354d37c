"""From a driver's answer to numbers, and from repetitions to medians.

Drain rate: the measured (non warm-up) jobs divided by the time from the first measured
job's start to the last job's end, both taken inside the handler. Latency: handler start
minus the enqueue time stamped into the payload (one machine, one clock). The SharQ case:
see ``rate_metrics``.
"""

import math
import statistics
from typing import Any, Dict, List, Optional, Sequence

#: A gap between two starts of one tenant's jobs shorter than the limit by more than this
#: (ms) is a violation: SharQ and the limiters count whole ms, and the handler starts a
#: little after the dequeue, so sub-ms differences are noise, not broken limits.
GAP_TOLERANCE_MS = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(pos))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _measured(records: Dict[str, Any]) -> List[int]:
    return [i for i, warm in enumerate(records["warm"]) if not warm]


def drain_metrics(records: Dict[str, Any]) -> Dict[str, float]:
    """jobs/s of a drain, warm-up excluded; also ms per job."""
    idx = _measured(records)
    if not idx:
        raise ValueError("no measured job in the worker's records")
    first = min(records["starts"][i] for i in idx)
    seconds = records["last_end"] - first
    rate = len(idx) / seconds if seconds > 0 else math.inf
    return {"jobs": len(idx), "seconds": seconds, "jobs_per_s": rate, "ms_per_job": 1000.0 / rate if rate else math.nan,
            **_partial(records)}


def _partial(records: Dict[str, Any]) -> Dict[str, Any]:
    """A run stopped by its time budget handled fewer jobs than it was given."""
    expected = records.get("expected") or 0
    return {"partial": bool(expected and records["handled"] < expected), "handled": records["handled"], "expected": expected}


def latency_metrics(records: Dict[str, Any]) -> Dict[str, float]:
    """Enqueue-to-handler-start latency in ms: p50, p90, p99, max, mean (warm-up excluded)."""
    lat = [1000.0 * (records["starts"][i] - records["sent"][i]) for i in _measured(records) if records["sent"][i] is not None]
    if not lat:
        raise ValueError("no measured job with an enqueue time in the worker's records")
    return {
        "jobs": len(lat), "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
        "max_ms": max(lat), "mean_ms": statistics.fmean(lat),
    }


def rate_metrics(records: Dict[str, Any], spec: Dict[str, Any]) -> Dict[str, float]:
    """The SharQ case: per-tenant limit of one job per `interval_ms`.

    - violations: gaps between consecutive starts of one tenant's jobs shorter than the
      limit (minus GAP_TOLERANCE_MS), as a share of all such gaps; min_gap_ms the shortest;
    - hot_gap_p50_ms: the median gap of the hot tenants (the ones with a backlog): the
      limit itself when it is applied precisely, more when the system is slower than it;
    - cold_done_p99_s: when 99% of the other tenants had all their jobs started, from the
      first start (fairness: do the small tenants wait behind the big ones' backlog?);
    - seconds / jobs_per_s: the whole drain (it cannot be shorter than
      (hot_jobs - 1) x interval, the floor the limit sets: ideal_s).
    """
    interval = float(spec["interval_ms"])
    by_tenant: Dict[str, List[float]] = {}
    for start, tenant in zip(records["starts"], records["tenants"]):
        by_tenant.setdefault(tenant, []).append(start)
    hot = {f"t{i}" for i in range(spec["hot_tenants"])}
    gaps, hot_gaps, cold_done = [], [], []
    t0 = min(records["starts"])
    for tenant, starts in by_tenant.items():
        starts.sort()
        diffs = [1000.0 * (b - a) for a, b in zip(starts, starts[1:])]
        gaps += diffs
        if tenant in hot:
            hot_gaps += diffs
        else:
            cold_done.append(starts[-1] - t0)
    seconds = records["last_end"] - t0
    violations = sum(1 for g in gaps if g < interval - GAP_TOLERANCE_MS)
    return {
        "jobs": len(records["starts"]),
        "seconds": seconds,
        "jobs_per_s": len(records["starts"]) / seconds if seconds > 0 else math.inf,
        "ideal_s": (spec["hot_jobs"] - 1) * interval / 1000.0,
        "gaps": len(gaps),
        "violations": violations,
        "violation_pct": 100.0 * violations / len(gaps) if gaps else 0.0,
        "min_gap_ms": min(gaps) if gaps else math.nan,
        "hot_gap_p50_ms": percentile(hot_gaps, 50),
        "cold_done_p99_s": percentile(cold_done, 99),
        **_partial(records),
    }


def metrics_for(workload: str, answer: Dict[str, Any], spec: Dict[str, Any]) -> Dict[str, Any]:
    """The numbers of one run of `workload` from the driver's answer."""
    if workload == "enqueue":
        seconds = answer["enqueue_seconds"]
        return {"jobs": answer["jobs"], "seconds": seconds, "jobs_per_s": answer["jobs"] / seconds if seconds > 0 else math.inf}
    records = answer["records"]
    if workload in ("drain", "drain_io"):
        return drain_metrics(records)
    if workload == "latency":
        return latency_metrics(records)
    if workload == "rate":
        return rate_metrics(records, spec)
    raise ValueError(f"unknown workload {workload!r}")


#: The numbers summarized per (peer, workload): the headline one first.
SUMMARY_KEYS = {
    "enqueue": ("jobs_per_s",),
    "drain": ("jobs_per_s",),
    "drain_io": ("jobs_per_s",),
    "latency": ("p50_ms", "p99_ms", "max_ms"),
    "rate": ("jobs_per_s", "violation_pct", "min_gap_ms", "hot_gap_p50_ms", "cold_done_p99_s", "seconds"),
}


def summarize(runs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (peer, workload): the median of each number over the successful
    repetitions, min/max and spread = (max - min) / median of the headline number, and the
    errors of failed repetitions. `runs` are the runner's run records."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["peer"], run["workload"]), []).append(run)
    rows = []
    for (peer, workload), items in groups.items():
        ok = [r for r in items if r.get("metrics")]
        row: Dict[str, Any] = {"peer": peer, "workload": workload, "reps": len(ok), "status": "ok" if ok else items[0]["status"]}
        partial = [r["metrics"] for r in ok if r["metrics"].get("partial")]
        if partial:  # stopped by the time budget: how far it got
            row["partial"] = {"runs": len(partial), "handled": [m["handled"] for m in partial], "expected": partial[0]["expected"]}
        errors = sorted({r["error"] for r in items if r.get("error")})
        if errors:
            row["errors"] = errors
        if ok:
            for key in SUMMARY_KEYS[workload]:
                values = [r["metrics"][key] for r in ok if not _is_nan(r["metrics"].get(key))]
                row[key] = statistics.median(values) if values else math.nan
            head = SUMMARY_KEYS[workload][0]
            values = [r["metrics"][head] for r in ok]
            row["min"], row["max"] = min(values), max(values)
            median = row[head]
            row["spread"] = (max(values) - min(values)) / median if median and not _is_nan(median) else 0.0
        rows.append(row)
    return rows


def _is_nan(value: Optional[float]) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
