"""One scripted sequence of HTTP calls covering every sharq-server route and error path.

Recorded once from Plivo's sharq-server (tests/record_sharq_server_golden.py writes
tests/data/sharq_server_golden.json) and replayed against sharq_fast's server by
tests/test_http_golden.py. Queue intervals and job_expire_interval are 60 s, so nothing
in the sequence depends on timing (it runs in well under a second).
"""

from typing import Any, Dict, List, Optional, Tuple

#: The SharQ config the sequence expects (both servers): nothing expires during a run.
JOB_EXPIRE_INTERVAL = 60_000
LONG = 60_000  # ms: an interval that keeps a queue rate-limited for the whole run

#: (label, method, path, body): body None = no body, bytes = sent as is, else JSON.
Step = Tuple[str, str, str, Any]

STEPS: List[Step] = [
    ("index", "GET", "/", None),
    ("dequeue_default_empty", "GET", "/dequeue/", None),
    ("dequeue_empty", "GET", "/dequeue/sms/", None),
    ("enqueue_q1_j1", "POST", "/enqueue/sms/q1/", {"job_id": "j1", "payload": {"message": "hi", "n": 1}, "interval": LONG}),
    ("enqueue_q1_j2", "POST", "/enqueue/sms/q1/",
     {"job_id": "j2", "payload": {"b": 1, "a": [1, 2.5, None, True, "x"]}, "interval": LONG, "requeue_limit": 2}),
    ("enqueue_q2_j1", "POST", "/enqueue/sms/q2/", {"job_id": "j1", "payload": {"nested": {"k": "v"}}, "interval": 0}),
    ("enqueue_string_payload", "POST", "/enqueue/other/q3/", {"job_id": "s1", "payload": "plain", "interval": 0}),
    ("enqueue_default", "POST", "/enqueue/default/q9/", {"job_id": "d1", "payload": {"x": 1}, "interval": 0}),
    ("enqueue_body_queue_ignored", "POST", "/enqueue/sms/q4/",
     {"job_id": "k1", "payload": {}, "interval": 0, "queue_id": "zzz", "queue_type": "zzz"}),
    ("dequeue_q1", "GET", "/dequeue/sms/", None),
    ("dequeue_q2", "GET", "/dequeue/sms/", None),
    ("dequeue_q4", "GET", "/dequeue/sms/", None),
    ("dequeue_rate_limited", "GET", "/dequeue/sms/", None),
    ("dequeue_default", "GET", "/dequeue/", None),
    ("dequeue_string_payload", "GET", "/dequeue/other/", None),
    ("finish_q1_j1", "POST", "/finish/sms/q1/j1/", None),
    ("finish_again", "POST", "/finish/sms/q1/j1/", None),
    ("finish_unknown", "POST", "/finish/sms/q2/nope/", None),
    ("interval_q1", "POST", "/interval/sms/q1/", {"interval": 5000}),
    ("interval_unknown_queue", "POST", "/interval/sms/nope/", {"interval": 5000}),
    ("interval_extra_keys", "POST", "/interval/sms/q1/", {"interval": 6000, "foo": 1}),
    ("metrics_global", "GET", "/metrics/", None),
    ("metrics_type", "GET", "/metrics/sms/", None),
    ("metrics_queue", "GET", "/metrics/sms/q1/", None),
    ("metrics_queue_unknown", "GET", "/metrics/sms/nope/", None),
    ("metrics_type_unknown", "GET", "/metrics/nope/", None),
    # max_queued_length (GitHub sharq-server only): a limit read from the payload.
    ("enqueue_max_first", "POST", "/enqueue/mq/q1/", {"job_id": "m1", "payload": {"max_queued_length": 2}, "interval": 0}),
    ("enqueue_max_second", "POST", "/enqueue/mq/q1/", {"job_id": "m2", "payload": {"max_queued_length": 2}, "interval": 0}),
    ("enqueue_max_full", "POST", "/enqueue/mq/q1/", {"job_id": "m3", "payload": {"max_queued_length": 2}, "interval": 0}),
    ("enqueue_max_not_a_number", "POST", "/enqueue/mq/q1/", {"job_id": "m4", "payload": {"max_queued_length": "2"}, "interval": 0}),
    ("dequeue_mq", "GET", "/dequeue/mq/", None),
    # sharq 1.3.0 overwrites a queued job's payload and queues its id twice.
    ("enqueue_duplicate_queued", "POST", "/enqueue/sms/q1/", {"job_id": "j2", "payload": {"dup": 1}, "interval": LONG}),
    # deletequeue / deepstatus (GitHub sharq-server only).
    ("deletequeue_no_body", "DELETE", "/deletequeue/none/q0/", None),
    ("deletequeue_q1", "DELETE", "/deletequeue/sms/q1/", {}),
    ("deletequeue_again", "DELETE", "/deletequeue/sms/q1/", {}),
    ("deletequeue_purge", "DELETE", "/deletequeue/mq/q1/", {"purge_all": True}),
    ("deletequeue_unknown_key", "DELETE", "/deletequeue/sms/q2/", {"foo": 1}),
    ("deletequeue_bad_id", "DELETE", "/deletequeue/sms/bad!id/", {}),
    ("deepstatus", "GET", "/deepstatus/", None),
    # Bad input: sharq-server's documented answer is 400 with a message.
    ("enqueue_not_json", "POST", "/enqueue/err/q1/", b"not json"),
    ("enqueue_empty_body", "POST", "/enqueue/err/q1/", b""),
    ("enqueue_json_list", "POST", "/enqueue/err/q1/", [1, 2]),
    ("enqueue_negative_interval", "POST", "/enqueue/err/q1/", {"job_id": "e1", "payload": {}, "interval": -1}),
    ("enqueue_float_interval", "POST", "/enqueue/err/q1/", {"job_id": "e1", "payload": {}, "interval": 1.5}),
    ("enqueue_bool_interval", "POST", "/enqueue/err/q2/", {"job_id": "e1", "payload": {}, "interval": True}),
    ("enqueue_bad_job_id", "POST", "/enqueue/err/q1/", {"job_id": "bad id!", "payload": {}, "interval": 0}),
    ("enqueue_long_job_id", "POST", "/enqueue/err/q1/", {"job_id": "x" * 101, "payload": {}, "interval": 0}),
    ("enqueue_bad_queue_id_in_path", "POST", "/enqueue/err/bad!id/", {"job_id": "e1", "payload": {}, "interval": 0}),
    ("enqueue_missing_interval", "POST", "/enqueue/err/q1/", {"job_id": "e2", "payload": {}}),
    ("enqueue_missing_payload", "POST", "/enqueue/err/q1/", {"job_id": "e3", "interval": 0}),
    ("enqueue_missing_job_id", "POST", "/enqueue/err/q1/", {"payload": {}, "interval": 0}),
    ("enqueue_unknown_key", "POST", "/enqueue/err/q1/", {"job_id": "e4", "payload": {}, "interval": 0, "foo": 1}),
    ("enqueue_bad_requeue_limit", "POST", "/enqueue/err/q1/", {"job_id": "e5", "payload": {}, "interval": 0, "requeue_limit": -5}),
    ("dequeue_bad_type", "GET", "/dequeue/bad!type/", None),
    ("finish_bad_job_id", "POST", "/finish/sms/q1/bad!id/", None),
    ("interval_not_a_number", "POST", "/interval/sms/q1/", {"interval": "x"}),
    ("interval_missing", "POST", "/interval/sms/q1/", {}),
    ("interval_not_json", "POST", "/interval/sms/q1/", b"garbage"),
    ("interval_negative", "POST", "/interval/sms/q1/", {"interval": -5}),
    ("metrics_bad_type", "GET", "/metrics/bad!type/", None),
    ("metrics_bad_queue_id", "GET", "/metrics/sms/bad!id/", None),
    ("unknown_route", "GET", "/nope/", None),
    ("wrong_method_enqueue", "GET", "/enqueue/sms/q1/", None),
    ("wrong_method_finish", "GET", "/finish/sms/q1/j1/", None),
    ("no_trailing_slash", "GET", "/metrics/sms", None),
    ("metrics_type_at_end", "GET", "/metrics/sms/", None),
]


def run_sequence(base_url: str, headers: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """Play STEPS against `base_url` (no redirects followed); one record per step."""
    import httpx

    records = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=10, follow_redirects=False) as http:
        for label, method, path, body in STEPS:
            if body is None:
                content = None
            elif isinstance(body, bytes):
                content = body
            else:
                import json

                content = json.dumps(body).encode()
            response = http.request(method, path, content=content)
            try:
                parsed: Any = response.json()
            except ValueError:
                parsed = None
            records.append(
                {
                    "label": label,
                    "method": method,
                    "path": path,
                    "status": response.status_code,
                    "content_type": response.headers.get("content-type"),
                    "location": response.headers.get("location"),
                    "json": parsed,
                    "text": None if parsed is not None else response.text[:300],
                }
            )
    return records


def normalize(body: Any) -> Any:
    """A response body with what differs from run to run taken out: per-minute counts
    become their total (the minutes are the run's clock; a run may straddle two), and
    the lists that SharQ builds from Redis sets are sorted."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key in ("enqueue_counts", "dequeue_counts"):
        if isinstance(out.get(key), dict):
            counts = out[key]
            out[key] = {"windows": len(counts), "total": sum(counts.values())}
    for key in ("queue_types", "queue_ids"):
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key])
    return out
