"""Long queries: a run_query on a source with limits.async_timeout_ms still running after
server.async_after_ms is answered 202 with Location naming a status URL under
server.public_url; the query goes on under the longer budget; the status URL (signed like a
callback) answers 202 while it runs, then the stored answer, byte for byte like a retried
callback; retries of the execution_id get the same 202 and never a second run; an answer
over the async budget is a stored query_timeout; a stop cancels what still runs and a retry
after the restart runs it again."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from harness import (SECRET, Daemon, Runner, count_for, count_query, expect, iso,  # noqa: E402
                     parse_args, sign)

PUBLIC = "https://connector.example.com/base"


def config(args, state="@WORKDIR@/state.db", async_ms=60000, public=PUBLIC):
    pub = 'public_url: "%s", ' % public if public else ""
    return f"""
server: {{ {pub}async_after_ms: 1000 }}
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "{state}" }}
log: {{ level: info, format: json }}
sources:
  - name: slow
    driver: sqlite
    dsn: "{args.demo_db}"
    limits: {{ timeout_ms: 900, async_timeout_ms: {async_ms} }}
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
"""


def poll(d, exec_id, method="GET", body=b"", secret=SECRET, ts=None):
    ts = time.time() if ts is None else ts
    headers = {"X-Interactor-Signature": sign(secret, body), "X-Interactor-Timestamp": iso(ts)}
    path = "/v1/executions/" + urllib.parse.quote(exec_id, safe="")
    s, h, raw = d.request(method, path, body, headers)
    return s, h, raw


def wait_answer(d, exec_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s, h, raw = poll(d, exec_id)
        if s != 202:
            return s, raw
        expect(h.get("Retry-After") == "5", h)
        time.sleep(0.1)
    raise AssertionError("still running after %d s" % timeout)


def db_runs(d, source):
    s, _, raw = d.request("GET", "/metrics")
    for fam in text_string_to_metric_families(raw.decode()):
        for smp in fam.samples:
            if smp.name == "interactor_connector_database_duration_seconds_count" and \
                    smp.labels.get("source") == source:
                return smp.value
    return 0


def test_answered_later(args):
    d = Daemon(args, config(args)).start()
    try:
        exec_id = "exec_async/1 x"  # any id: the status URL escapes it
        n = count_for(d, "demo", 4)  # about 4 s, beyond async_after_ms (1 s)
        q = {"source": "slow", "query": count_query(n)}
        t0 = time.time()
        s, h, raw, body = d.call("run_query", q, exec_id=exec_id)
        waited = time.time() - t0
        url = PUBLIC + "/v1/executions/" + urllib.parse.quote(exec_id, safe="")
        expect(s == 202 and h.get("Location") == url, "%d %s %s" % (s, h, raw[:300]))
        expect(body["status"] == "running" and body["status_url"] == url, body)
        expect(0.9 < waited < 5, "answered 202 after %.2f s" % waited)
        # a retry of the same id while it runs: the same 202, not a second run
        s2, h2, raw2, _ = d.call("run_query", q, exec_id=exec_id)
        expect(s2 == 202 and h2.get("Location") == url, "%d %s" % (s2, raw2[:200]))
        # the status URL: 202 while it runs, then the answer
        s, raw = wait_answer(d, exec_id)
        expect(s == 200 and json.loads(raw)["result"]["rows"] == [[n]], raw[:300])
        s, _, raw_again = poll(d, exec_id)
        expect(s == 200 and raw_again == raw, "the status URL answers the same bytes")
        s, _, raw_cb, _ = d.call("run_query", q, exec_id=exec_id)
        expect(s == 200 and raw_cb == raw, "a retried callback gets the stored answer")
        # POST with the callback's own signed body works too; another id in it does not
        cb = json.dumps({"tool_name": "run_query", "parameters": q, "execution_id": exec_id,
                         "timestamp": iso(time.time())}).encode()
        s, _, raw_post = poll(d, exec_id, method="POST", body=cb)
        expect(s == 200 and raw_post == raw, "POST %d" % s)
        other = cb.replace(b"exec_async", b"exec_other")
        s, _, _ = poll(d, exec_id, method="POST", body=other)
        expect(s == 400, "another id in the body: %d" % s)
        # signed like a callback, or nothing
        s, _, _ = d.request("GET", "/v1/executions/exec_async")
        expect(s == 401, "unsigned: %d" % s)
        s, _, _ = poll(d, exec_id, secret="wrong-secret-0123456789abcdef")
        expect(s == 401, "wrong secret: %d" % s)
        s, _, _ = poll(d, exec_id, ts=time.time() - 1000)
        expect(s == 401, "stale timestamp: %d" % s)
        s, _, raw = poll(d, "exec_never_seen")
        expect(s == 404 and b"unknown_execution" in raw, raw[:200])
        # one run in all
        expect(db_runs(d, "slow") == 1, "the query ran %s times" % db_runs(d, "slow"))
        # a quick query on the same source is answered in the callback
        s, _, raw, body = d.call("run_query", {"source": "slow", "query": "SELECT 1 AS one"})
        expect(s == 200 and body["result"]["rows"] == [[1]], raw[:200])
    finally:
        d.stop()


def test_budgets(args):
    # over the async budget: a stored query_timeout at the status URL
    d = Daemon(args, config(args, async_ms=2500)).start()
    try:
        n = count_for(d, "demo", 20)  # far beyond the 2.5 s budget
        s, _, raw, _ = d.call("run_query", {"source": "slow", "query": count_query(n)},
                              exec_id="exec_async_budget")
        expect(s == 202, raw[:200])
        s, raw = wait_answer(d, "exec_async_budget")
        expect(s == 400 and b"query_timeout" in raw and b"2500 ms" in raw, raw[:300])
        # the synchronous budget still holds where async is not configured
        t0 = time.time()
        s, _, raw, _ = d.call("run_query", {"source": "demo", "query": count_query(n)})
        expect(s == 400 and b"query_timeout" in raw, raw[:200])
        expect(time.time() - t0 < 15, "demo ran past its timeout_ms")
    finally:
        d.stop()
    # async_timeout_ms without a public_url: the configuration says what is missing
    path = os.path.join(tempfile.mkdtemp(prefix="cn-async-"), "c.yaml")
    with open(path, "w") as f:
        f.write(config(args, state="/tmp/unused.db", public=None))
    p = subprocess.run([args.binary, "check-config", "--config", path], capture_output=True,
                       text=True, env=dict(os.environ, E2E_SECRET=SECRET))
    expect(p.returncode != 0 and "async_timeout_ms" in p.stderr and "server.public_url" in p.stderr,
           p.stderr)


def test_stop_cancels(args, tmp):
    state = os.path.join(tmp, "state.db")
    d = Daemon(args, config(args, state=state, async_ms=300000)).start()
    try:
        q = {"source": "slow", "query": count_query(count_for(d, "demo", 600))}
        s, _, raw, _ = d.call("run_query", q, exec_id="exec_async_stop")
        expect(s == 202, raw[:200])
        t0 = time.time()
        rc = d.stop(signal.SIGTERM, timeout=60)
        expect(rc == 0 and time.time() - t0 < 40, "stop: rc %s after %.1f s" % (rc, time.time() - t0))
        expect("canceled" in d.log_text() or "shutting_down" in d.log_text(), "not canceled")
    finally:
        d.stop()
    d = Daemon(args, config(args, state=state, async_ms=300000)).start()
    try:
        q = {"source": "slow", "query": count_query(count_for(d, "demo", 600))}
        s, _, raw = poll(d, "exec_async_stop")
        expect(s == 404, "a canceled execution was kept: %d %s" % (s, raw[:200]))
        s, _, raw, _ = d.call("run_query", q, exec_id="exec_async_stop")
        expect(s == 202, "the retry runs it again: %d %s" % (s, raw[:200]))
    finally:
        d.stop()


def main():
    args = parse_args()
    r = Runner()
    r.run("test_answered_later", test_answered_later, args)
    r.run("test_budgets", test_budgets, args)
    with tempfile.TemporaryDirectory(prefix="cn-async-") as tmp:
        r.run("test_stop_cancels", test_stop_cancels, args, tmp)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
