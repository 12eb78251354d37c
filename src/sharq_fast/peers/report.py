"""The comparison as a terminal table, JSON and PNG charts."""

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .registry import WORKLOAD_TITLES, WORKLOADS

#: Table cells for rows that did not run.
_STATUS_CELL = {"not supported": "n/s", "unavailable": "unavailable", "error": "error"}


def _rate(row: Dict[str, Any], with_spread: bool) -> str:
    text = f"{row['jobs_per_s']:,.0f}" + ("*" if row.get("partial") else "")
    if with_spread and row.get("reps", 0) > 1:
        text += f" ±{50 * row['spread']:.0f}%"
    return text


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _cell(row: Optional[Dict[str, Any]], workload: str, with_spread: bool) -> List[str]:
    width = 1 if workload != "latency" and workload != "rate" else (2 if workload == "latency" else 4)
    if row is None:
        return [""] * width
    if row["status"] != "ok":
        return [_STATUS_CELL.get(row["status"], row["status"])] + [""] * (width - 1)
    if workload == "latency":
        return [_num(row["p50_ms"], ".1f"), _num(row["p99_ms"], ".1f")]
    if workload == "rate":
        return [_rate(row, with_spread), _num(row["violation_pct"], ".1f"), _num(row["hot_gap_p50_ms"], ".0f"),
                _num(row["cold_done_p99_s"], ".1f")]
    return [_rate(row, with_spread)]


_HEADERS = {
    "enqueue": ["enqueue jobs/s"],
    "drain": ["drain jobs/s"],
    "drain_io": ["drain 1ms jobs/s"],
    "latency": ["lat p50 ms", "lat p99 ms"],
    "rate": ["rate jobs/s", "% under limit", "hot gap ms", "cold done s"],
}


def table_cells(document: Dict[str, Any]) -> "tuple[List[str], List[List[str]]]":
    """(headers, one row of cells per peer): medians; ± half the spread of the repetitions."""
    rows = {(r["peer"], r["workload"]): r for r in document["summary"]}
    workloads = [w for w in WORKLOADS if w in document["workloads"]]
    with_spread = document["settings"]["repeat"] > 1
    headers = ["peer"] + [h for w in workloads for h in _HEADERS[w]]
    lines = []
    for peer in document["peers"]:
        cells = [peer]
        for w in workloads:
            cells += _cell(rows.get((peer, w)), w, with_spread)
        lines.append(cells)
    return headers, lines


def format_table(document: Dict[str, Any]) -> str:
    """One line per peer, one column group per workload."""
    headers, lines = table_cells(document)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def markdown_table(document: Dict[str, Any]) -> str:
    """The same table in Markdown (for README.md and docs/benchmarks.md)."""
    headers, lines = table_cells(document)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def notes(document: Dict[str, Any]) -> List[str]:
    """Why a peer or a workload did not run (never silently dropped), and which runs the
    time budget stopped."""
    out = []
    seen = set()
    budget = document["settings"].get("budget")
    for row in document["summary"]:
        if row.get("partial"):
            p = row["partial"]
            out.append(f"{row['peer']} {row['workload']}: the {budget:g} s budget ended {p['runs']} of {row['reps']} run(s) "
                       f"after {', '.join(f'{h:,}' for h in p['handled'])} of {p['expected']:,} jobs (rate over those)")
        for error in row.get("errors", []):
            key = (row["peer"], row["status"], error)
            if key in seen:
                continue
            seen.add(key)
            what = row["peer"] if row["status"] == "unavailable" else f"{row['peer']} {row['workload']}"
            out.append(f"{what}: {row['status']}: {error}")
    return out


def print_report(document: Dict[str, Any]) -> None:
    """The table, the notes and the versions, on stdout."""
    s, m = document["settings"], document["machine"]
    print(f"sharq-fast compare --peers: {s['jobs']:,} jobs, {s['repeat']} interleaved repetitions (medians)")
    print(f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, node {m['node']}, "
          f"redis-server {m['redis_server']} (private, no persistence)")
    print(format_table(document))
    print(f"drains: {s['jobs']:,} jobs, one worker process; latency: {s['latency_jobs']:,} jobs at {s['rate']:g}/s; "
          f"rate: {s['tenants']:,} tenants ({s['hot_tenants']} with {s['hot_jobs']} jobs, the others {s['cold_jobs']}), "
          f"one job per {s['interval_ms']} ms each")
    print("% under limit: gaps between a tenant's job starts shorter than the limit; hot gap: median gap of the "
          f"{s['hot_tenants']} busy tenants (ideal {s['interval_ms']} ms); cold done: when 99% of the other tenants were served")
    for line in notes(document):
        print(f"note: {line}")
    if any(row.get("partial") for row in document["summary"]):
        print(f"*: measured over the jobs handled within the {s.get('budget', 0):g} s budget (see the notes)")
    versions = "; ".join(f"{peer} {' '.join(f'{k} {v}' for k, v in info['versions'].items())}"
                         for peer, info in document["peers"].items() if info["versions"])
    if versions:
        print(f"versions: {versions}")


def write_outputs(out_dir: str, document: Dict[str, Any], name: str = "peers") -> List[str]:
    """DIR/NAME.json and, with matplotlib, DIR/NAME.png. Returns notes for the user."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    json_path = path / f"{name}.json"
    json_path.write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written = [f"wrote {json_path}"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written + ["matplotlib is not installed (pip install 'sharq-fast[bench]'): no PNG chart, JSON only"]
    png_path = path / f"{name}.png"
    _chart(plt, document, png_path)
    return written + [f"wrote {png_path}"]


def _json_safe(value: Any) -> Any:
    """NaN and infinities (a number that could not be computed) as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


_PANELS = [
    ("enqueue", "jobs_per_s", "bulk enqueue, jobs/s"),
    ("drain", "jobs_per_s", "drain, no-op handler, jobs/s"),
    ("drain_io", "jobs_per_s", "drain, 1 ms I/O handler, jobs/s"),
    ("latency", "p50_ms", "end-to-end latency p50 / p99, ms"),
    ("rate", "jobs_per_s", "SharQ case: jobs/s (% of gaps under the limit)"),
    ("rate", "hot_gap_p50_ms", "SharQ case: busy tenants' median gap, ms (line: the limit)"),
]


def _chart(plt: Any, document: Dict[str, Any], png_path: Path) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    rows = {(r["peer"], r["workload"]): r for r in document["summary"]}
    peers = list(document["peers"])
    panels = [p for p in _PANELS if p[0] in document["workloads"]]
    columns = min(3, len(panels))
    lines = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, lines * (0.36 * len(peers) + 1.6) + 0.6), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax in flat[len(panels):]:
        ax.axis("off")
    for ax, (workload, key, title) in zip(flat, panels):
        y = list(range(len(peers)))
        values, lows, highs, labels = [], [], [], []
        for peer in peers:
            row = rows.get((peer, workload))
            ok = row is not None and row["status"] == "ok"
            v = row.get(key) if ok else 0.0
            if v is None or (isinstance(v, float) and math.isnan(v)):  # not computable (e.g. no gap at all)
                labels.append("-")
                values.append(0.0), lows.append(0.0), highs.append(0.0)
                continue
            values.append(v)
            lows.append(v - row.get("min", v) if ok and key == "jobs_per_s" else 0.0)
            highs.append(row.get("max", v) - v if ok and key == "jobs_per_s" else 0.0)
            if not ok:
                labels.append(_STATUS_CELL.get(row["status"], row["status"]) if row else "")
            elif workload == "latency":
                labels.append(f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}")
            elif key == "hot_gap_p50_ms":
                labels.append(f"{v:,.0f} ms")
            elif workload == "rate":
                labels.append(f"{v:,.0f}{'*' if row.get('partial') else ''} ({row['violation_pct']:.0f}%)")
            else:
                labels.append(f"{v:,.0f}{'*' if row.get('partial') else ''}")
        colors = ["#1f77b4" if p == "sharq_fast" else "#d62728" if p == "sharq" else "#7f7f7f" for p in peers]
        ax.barh(y, [v if v > 0 else math.nan for v in values], xerr=[lows, highs], color=colors, capsize=2)
        if workload == "latency":
            p99 = [rows[(p, workload)]["p99_ms"] if rows.get((p, workload), {}).get("status") == "ok" else math.nan for p in peers]
            ax.scatter(p99, y, marker="|", s=120, color="black", zorder=3, label="p99")
            ax.legend(fontsize=7, loc="lower right")
        if key == "hot_gap_p50_ms":
            ax.axvline(document["settings"]["interval_ms"], color="#2ca02c", linestyle="--", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels(peers, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        finite = [v for v in values if v > 0]
        extra = [rows[(p, workload)]["p99_ms"] for p in peers
                 if workload == "latency" and rows.get((p, workload), {}).get("status") == "ok"]
        if finite:
            ax.set_xlim(min(finite) / 2, max(finite + extra) * 8)
        ends = [max(v, h + v) for v, h in zip(values, highs)]
        if workload == "latency":  # the label goes after the p99 mark
            ends = [max(e, rows[(p, workload)]["p99_ms"]) if rows.get((p, workload), {}).get("status") == "ok" else e
                    for e, p in zip(ends, peers)]
        for yi, v, label in zip(y, ends, labels):
            ax.text(v * 1.2 if v > 0 else (min(finite) / 1.9 if finite else 1), yi, label, va="center", fontsize=7)
    m, s = document["machine"], document["settings"]
    budget = f"; *: stopped by the {s['budget']:g} s budget" if any(r.get("partial") for r in document["summary"]) else ""
    fig.suptitle(f"sharq-fast compare --peers: {s['jobs']:,} jobs, medians of {s['repeat']} (bars: min-max){budget}; "
                 f"{m['cores']} cores ({m['cpu']}), redis-server {m['redis_server']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
