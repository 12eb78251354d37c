"""Record Plivo's sharq-server's answers to tests/http_sequence.py into
tests/data/sharq_server_golden.json (the spec that tests/test_http_golden.py replays).

    python tests/record_sharq_server_golden.py                 # PyPI SharQServer 0.2.0 (ported)
    python tests/record_sharq_server_golden.py --source DIR --name github --venv DIR2
                                                               # a plivo/sharq-server checkout

Each recording runs sharq-server as its README does (``sharq-server --config FILE``:
gunicorn, one gevent worker) against a private redis-server, on a free port.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from http_sequence import JOB_EXPIRE_INTERVAL, STEPS, run_sequence  # noqa: E402

from sharq_fast._redis_server import RedisServer, free_port  # noqa: E402
from sharq_fast.http import _peer_server as peer  # noqa: E402

GOLDEN = HERE / "data" / "sharq_server_golden.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="pypi-0.2.0", help="the recording's key in the golden file")
    parser.add_argument("--source", help="a plivo/sharq-server checkout to install instead of the PyPI sdist")
    parser.add_argument("--source-note", default="", help="where --source came from (commit, date)")
    parser.add_argument("--venv", help="its virtualenv (default: the cached PyPI one)")
    parser.add_argument("--out", default=str(GOLDEN))
    args = parser.parse_args()

    venv = peer.ensure_server_venv(args.venv, source=args.source, log=print)
    versions = peer.server_versions(venv)
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as folder:
        port = free_port()
        config = peer.write_server_config(
            os.path.join(folder, "sharq.conf"), redis_host="127.0.0.1", redis_port=redis_server.port, port=port,
            job_expire_interval=JOB_EXPIRE_INTERVAL, job_requeue_interval=1000,
        )
        server = peer.SharqServerProcess(venv, config, port, log_path=os.path.join(folder, "server.log"))
        try:
            records = run_sequence(server.url)
        finally:
            server.stop()
            log = Path(server.log_path).read_text(errors="replace")
    out = Path(args.out)
    document = json.loads(out.read_text()) if out.exists() else {}
    document.setdefault("about", (
        "Answers of Plivo's sharq-server to tests/http_sequence.py, recorded by "
        "tests/record_sharq_server_golden.py: status, content-type and JSON body per step "
        "(text when the body is not JSON)."
    ))
    document.setdefault("recordings", {})[args.name] = {
        "source": args.source_note or (args.source or f"PyPI {peer.SERVER_REQUIREMENT}, ported by lib2to3 ({', '.join(peer.FIXERS)})"),
        "versions": versions,
        "python": sys.version.split()[0],
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "steps": len(STEPS),
        "records": records,
        "server_log_errors": sorted({line.strip() for line in log.splitlines() if "Error" in line and ":" in line})[:20],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"recorded {len(records)} steps from sharq-server ({versions}) as {args.name!r} into {out}")
    for record in records:
        print(f"  {record['status']} {record['method']:6} {record['path']:32} {json.dumps(record['json']) if record['json'] is not None else record['text'][:60]!s:.110}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
