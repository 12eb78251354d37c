"""sharq-fast serve gives sharq-server's answers: tests/http_sequence.py replayed against a
real uvicorn process and compared with what Plivo's sharq-server answered to the same
calls (tests/data/sharq_server_golden.json, recorded by record_sharq_server_golden.py).

Two recordings: PyPI's SharQServer 0.2.0 (Python 2 code ported by lib2to3) and GitHub's
Python 3 server.py (also "0.2.0"; it adds current_queue_length, max_queued_length, 429,
/deletequeue/ and /deepstatus/). Ours follows the GitHub one, except where documented
(docs/http.md, "Differences"): its 500s on bad input are 400s with a message, etc.
"""

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from http_helpers import ServeProcess
from http_sequence import JOB_EXPIRE_INTERVAL, STEPS, normalize, run_sequence

GOLDEN = json.loads((Path(__file__).parent / "data" / "sharq_server_golden.json").read_text())
PYPI = {r["label"]: r for r in GOLDEN["recordings"]["pypi-0.2.0"]["records"]}
GITHUB = {r["label"]: r for r in GOLDEN["recordings"]["github"]["records"]}

#: Steps where GitHub's server fails on its own bug (a payload that is not a JSON object
#: is a 500: it calls payload.get), so the PyPI server's answer is the reference.
PYPI_REFERENCE = {"enqueue_string_payload", "dequeue_string_payload", "metrics_global"}

#: Our answers to the bad-input steps: 400 and these messages (sharq-server: 500, HTML).
BAD_INPUT = {
    "enqueue_not_json": "the request body is not valid JSON",
    "enqueue_empty_body": "the request body is empty: expected a JSON object",
    "enqueue_json_list": "the request body must be a JSON object, not an array",
    "enqueue_negative_interval": "`interval` has an invalid value.",
    "enqueue_float_interval": "`interval` has an invalid value.",
    "enqueue_bool_interval": "`interval` has an invalid value.",
    "enqueue_bad_job_id": "`job_id` has an invalid value.",
    "enqueue_long_job_id": "`job_id` has an invalid value.",
    "enqueue_bad_queue_id_in_path": "`queue_id` has an invalid value.",
    "enqueue_missing_interval": "`interval` is a mandatory parameter.",
    "enqueue_missing_payload": "`payload` is a mandatory parameter.",
    "enqueue_missing_job_id": "`job_id` is a mandatory parameter.",
    "enqueue_unknown_key": "enqueue() got an unexpected keyword argument 'foo'",
    "enqueue_bad_requeue_limit": "`requeue_limit` has an invalid value.",
    "enqueue_max_not_a_number": "`max_queued_length` has an invalid value.",
    "dequeue_bad_type": "`queue_type` has an invalid value.",
    "finish_bad_job_id": "`job_id` has an invalid value.",
    "interval_not_a_number": "`interval` has an invalid value.",
    "interval_missing": "`interval` is a mandatory parameter.",
    "interval_not_json": "the request body is not valid JSON",
    "interval_negative": "`interval` has an invalid value.",
    "metrics_bad_type": "`queue_type` has an invalid value.",
    "metrics_bad_queue_id": "`queue_id` has an invalid value.",
    "deletequeue_unknown_key": "clear_queue() got an unexpected keyword argument 'foo'",
    "deletequeue_bad_id": "`queue_id` has an invalid value.",
}

#: Our other documented differences: (status, JSON body).
DIFFERENT = {
    # sharq_fast keeps the first job; sharq 1.3.0 overwrote its payload and queued it twice.
    "enqueue_duplicate_queued": (409, {"message": "a job with this job_id is already queued or active in this queue", "status": "failure"}),
    # An empty DELETE body is {} here; sharq-server fails to parse it (500).
    "deletequeue_no_body": (200, {"message": "No queued calls found", "status": "Failure"}),
    # JSON errors instead of Flask's HTML pages; no 308 redirect to the slashed path.
    "unknown_route": (404, {"message": "no route for /nope/", "status": "failure"}),
    "wrong_method_enqueue": (405, {"message": "GET is not allowed on /enqueue/{queue_type}/{queue_id}/", "status": "failure"}),
    "wrong_method_finish": (405, {"message": "GET is not allowed on /finish/{queue_type}/{queue_id}/{job_id}/", "status": "failure"}),
    "no_trailing_slash": (200, None),  # served as /metrics/sms/ (see the test)
}


@pytest.fixture(autouse=True)
def core() -> None:
    """Once, not once per core: the server process picks its own core."""


@pytest.fixture(scope="module")
def replay(redis_server_url: str) -> Iterator[Dict[str, Dict[str, Any]]]:
    import redis

    conn = redis.Redis.from_url(redis_server_url)
    conn.flushdb()
    server = ServeProcess(redis_server_url, "--job-expire-interval", str(JOB_EXPIRE_INTERVAL))
    try:
        yield {r["label"]: r for r in run_sequence(server.url)}
    finally:
        server.close()
        conn.flushdb()
        conn.close()


def test_the_recordings_cover_the_sequence() -> None:
    labels = [label for label, *_ in STEPS]
    assert list(PYPI) == labels and list(GITHUB) == labels, "re-run tests/record_sharq_server_golden.py"


@pytest.mark.parametrize("label", [label for label, *_ in STEPS])
def test_same_answer_as_sharq_server(replay: Dict[str, Dict[str, Any]], label: str) -> None:
    ours = replay[label]
    assert ours["content_type"] == "application/json", ours
    body = ours["json"]
    if label in BAD_INPUT:
        assert GITHUB[label]["status"] == 500, "sharq-server answers this bad input with a 500"
        assert ours["status"] == 400, ours
        assert set(body) == {"message", "status"} and body["status"] == "failure"
        assert body["message"].startswith(BAD_INPUT[label]), body
        return
    if label in DIFFERENT:
        status, expected = DIFFERENT[label]
        assert ours["status"] == status, ours
        if expected is not None:
            assert body == expected
        return
    reference = PYPI[label] if label in PYPI_REFERENCE else GITHUB[label]
    assert ours["status"] == reference["status"], (ours, reference)
    expected = normalize(reference["json"])
    got = normalize(body)
    if reference is PYPI.get(label) and label.startswith("dequeue") and ours["status"] == 200:
        # The PyPI server has no current_queue_length; GitHub's (and ours) add it.
        assert isinstance(got.pop("current_queue_length"), int)
    assert got == expected


def test_no_trailing_slash_is_served(replay: Dict[str, Dict[str, Any]]) -> None:
    # sharq-server redirects /metrics/sms to /metrics/sms/ (308); this server answers it.
    assert GITHUB["no_trailing_slash"]["status"] == 308
    assert GITHUB["no_trailing_slash"]["location"].endswith("/metrics/sms/")
    assert normalize(replay["no_trailing_slash"]["json"]) == normalize(GITHUB["metrics_type_at_end"]["json"])


def test_json_is_jsonify_shaped(replay: Dict[str, Dict[str, Any]]) -> None:
    """Keys in the order Flask's jsonify sorts them (clients that compare text, not
    parsed JSON, see the same bytes)."""
    for label, record in replay.items():
        if isinstance(record["json"], dict):
            assert list(record["json"]) == sorted(record["json"]), label
