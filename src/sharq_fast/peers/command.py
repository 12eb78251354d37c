"""``sharq-fast compare --peers``: from the command's options to the report."""

from typing import Callable, List, Optional, Sequence

from ..exceptions import SharqException
from . import registry, report, runner


class PeersUsageError(SharqException):
    """Bad --peers / --workloads values (printed as one line by the CLI)."""


def parse_names(text: Optional[str], known: Sequence[str], what: str) -> List[str]:
    """A comma list (or "all") checked against `known`; keeps `known`'s order."""
    if text is None or text.strip() in ("", "all"):
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PeersUsageError(f"unknown {what} {', '.join(unknown)} (choose from {', '.join(known)})")
    return [n for n in known if n in names]


def settings_for(
    size: int, repeat: int, tenants: Optional[int] = None, rate: Optional[float] = None, budget: Optional[float] = None
) -> runner.Settings:
    """Workload sizes from --size (the drains' jobs): the latency run sends size/50 jobs
    (50 to 2,000); the SharQ case has --tenants tenants (default 10,000), 1% of them busy."""
    settings = runner.Settings(jobs=size, repeat=repeat)
    settings.latency_jobs = max(50, min(2_000, size // 50))
    settings.latency_warmup = max(10, settings.latency_jobs // 20)
    if tenants is not None:
        settings.tenants = tenants
    settings.hot_tenants = max(1, settings.tenants // 100)
    if rate is not None:
        settings.rate = rate
    if budget is not None:
        settings.budget = budget
    return settings


def run_command(
    peers: Optional[str], workloads: Optional[str], settings: runner.Settings, out: Optional[str], log: Callable[[str], None]
) -> int:
    """Run the comparison, print the report, write DIR/peers.json and .png. Exit status."""
    names = parse_names(peers, registry.ALL_PEERS, "peer")
    chosen = parse_names(workloads, registry.WORKLOADS, "workload")
    selected = registry.select(names)
    log(f"peers: {', '.join(p.name for p in selected)}; workloads: {', '.join(chosen)}")
    document = runner.compare_peers(selected, chosen, settings, log)
    report.print_report(document)
    if out:
        for line in report.write_outputs(out, document):
            print(line)
    return 0
