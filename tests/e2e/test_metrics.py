"""GET /metrics: Prometheus' own parser (python3-prometheus-client) reads the whole
exposition; the counters follow the calls made (by tool, source, status and code;
rows; bytes; replays; guard rejections by class); request and database histograms
count what the counters count; the pool gauges show a request waiting for the one
connection of a source; the store counts its answers; a URL naming no tool does not
mint series; /metrics answers only the networks metrics.allow_from names, and
nobody when metrics.enabled is false."""

import os
import sys
import tempfile
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, count_for, count_query, expect, parse_args  # noqa: E402

P = "interactor_connector_"



def config(args, server="", pool=1, state="@WORKDIR@/state.db", metrics=""):
    return f"""
server: {{ {server} }}
metrics: {{ {metrics} }}
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "{state}" }}
log: {{ level: info, format: json }}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    mappings: "{args.source_dir}/conf/mappings/demo.yaml"
    pool: {{ size: {pool} }}
    limits: {{ timeout_ms: 20000 }}
"""


def scrape(d, source_address=None):
    conn = d.connect(timeout=10, source_address=source_address)
    status, headers, raw = d.request("GET", "/metrics", conn=conn)
    conn.close()
    return status, headers, raw.decode()


def samples(d):
    """{(name, frozenset(labels)): value} of one scrape, read by Prometheus' parser."""
    status, headers, text = scrape(d)
    expect(status == 200, "GET /metrics: %d %s" % (status, text[:300]))
    expect(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"), headers)
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


def total(m, name, **labels):
    """The sum over every series of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= ls)


def test_counters_follow_calls(args, tmp):
    state = os.path.join(tmp, "state.db")
    d = Daemon(args, config(args, pool=4, state=state)).start()
    try:
        before = samples(d)
        expect([v for (n, _), v in before.items() if n == P + "build_info"] == [1], "build_info")
        expect(value(before, P + "source_up", source="demo") == 1, "source_up")
        expect(value(before, P + "schema_refreshes_total", source="demo", result="ok") >= 1,
               "the start-up refresh is counted")
        expect(value(before, P + "pool_size", source="demo") == 4, "pool_size")
        expect(value(before, P + "pool_connections_in_use", source="demo") == 0, "in use at rest")

        rows = 0
        sizes = 0
        for n in (1, 3, 7):
            s, _, raw, body = d.call("run_query", {
                "source": "demo", "query": "SELECT id FROM customers ORDER BY id LIMIT $1",
                "parameters": [n]})
            expect(s == 200 and len(body["result"]["rows"]) == n, raw[:200])
            rows += n
            sizes += len(raw)
        s, _, raw, body = d.call("run_query", {"source": "demo", "query": "DELETE FROM customers"})
        expect(s == 400 and body["error"]["code"] == "query_rejected", raw[:200])
        s, _, raw, body = d.call("run_query", {"source": "demo",
                                               "query": "SELECT * FROM internal_audit_log"})
        expect(s == 400 and body["error"]["code"] == "query_rejected", raw[:200])
        s, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 1; SELECT 2"})
        expect(s == 400 and body["error"]["code"] == "query_rejected", raw[:200])
        # the same execution_id twice: the second is a replay
        s1, _, raw1, _ = d.call("list_data_sources", {}, exec_id="exec_metrics_replay")
        s2, _, raw2, _ = d.call("list_data_sources", {}, exec_id="exec_metrics_replay")
        expect(s1 == 200 and s2 == 200 and raw1 == raw2, "replay")
        # URLs that name no tool all land in one series
        for name in ("nope_a", "nope_b", "nope_c"):
            s, _, _, _ = d.call(name, {})
            expect(s == 404, name)
        s, _, _, _ = d.call("run_query", {"source": "demo", "query": "SELECT 1"},
                            secret="wrong-secret-0123456789abcdef")
        expect(s == 401, "bad signature")

        m = samples(d)
        calls = P + "tool_calls_total"
        expect(value(m, calls, tool="run_query", source="demo", status="200", code="ok")
               - value(before, calls, tool="run_query", source="demo", status="200", code="ok") == 3,
               "3 run_query answered 200")
        expect(value(m, calls, tool="run_query", source="demo", status="400",
                     code="query_rejected") == 3, "3 rejected")
        expect(value(m, calls, tool="list_data_sources", source="", status="200", code="ok") == 1,
               "list_data_sources ran once")
        expect(value(m, calls, tool="list_data_sources", source="", status="200",
                     code="replayed") == 1, "and was replayed once")
        expect(value(m, P + "execution_replays_total") == 1, "execution_replays_total")
        expect(value(m, calls, tool="unknown", source="", status="404", code="unknown_tool") == 3,
               "unknown tools counted under tool=unknown")
        expect(not any(dict(ls).get("tool", "").startswith("nope") for (_, ls) in m),
               "a URL minted a series")
        expect(value(m, calls, tool="run_query", source="", status="401",
                     code="invalid_signature") == 1, "401 counted")
        expect(value(m, P + "rows_returned_total", source="demo") == rows, "rows_returned_total")
        got_bytes = value(m, P + "tool_response_bytes_total", tool="run_query", source="demo")
        expect(got_bytes >= sizes, "response bytes %s < %s" % (got_bytes, sizes))
        rej = P + "guard_rejections_total"
        expect(value(m, rej, source="demo", reason="write") == 1, "a write rejection")
        expect(value(m, rej, source="demo", reason="hidden") == 1, "a hidden-table rejection")
        expect(value(m, rej, source="demo", reason="statements") == 1, "two statements")
        # the histograms count what the counters count
        expect(value(m, P + "tool_call_duration_seconds_count", tool="run_query")
               == total(m, calls, tool="run_query"), "request histogram count")
        expect(value(m, P + "tool_call_duration_seconds_bucket", tool="run_query", le="+Inf")
               == total(m, calls, tool="run_query"), "+Inf bucket")
        expect(value(m, P + "database_duration_seconds_count", source="demo") == 3,
               "database time of the 3 queries that ran")
        expect(0 < value(m, P + "database_duration_seconds_sum", source="demo")
               <= value(m, P + "tool_call_duration_seconds_sum", tool="run_query"),
               "database time within request time")
        # the store: every final answer is written (the writer gathers for ~10 ms)
        deadline = time.time() + 10
        while time.time() < deadline:
            m = samples(d)
            if value(m, P + "execution_store_pending") == 0 and \
                    value(m, P + "execution_store_entries") >= 7:
                break
            time.sleep(0.05)
        # what went through the store: 3 answered, 3 rejected, 1 list_data_sources
        expect(value(m, P + "execution_store_entries") == 7,
               "execution_store_entries %s" % value(m, P + "execution_store_entries"))
        expect(value(m, P + "execution_store_write_duration_seconds_count") >= 1, "store writes")
        expect(value(m, P + "execution_store_bytes") > 0, "store bytes")
        expect(value(m, "process_resident_memory_bytes") > 1 << 20, "process RSS")
    finally:
        d.stop()
    # a new process counts the answers already in the file
    d2 = Daemon(args, config(args, state=state)).start()
    try:
        expect(value(samples(d2), P + "execution_store_entries") == 7, "entries after a restart")
    finally:
        d2.stop()


def test_pool_waiting(args):
    d = Daemon(args, config(args, pool=1)).start()
    try:
        done = []
        query = count_query(count_for(d, "demo", 3))

        def slow(i):
            s, _, raw, _ = d.call("run_query", {"source": "demo", "query": query})
            done.append((s, raw[:200]))

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        seen = (0, 0)
        deadline = time.time() + 15
        while time.time() < deadline and any(t.is_alive() for t in threads):
            m = samples(d)
            in_use = value(m, P + "pool_connections_in_use", source="demo")
            waiting = value(m, P + "pool_waiting", source="demo")
            inflight = value(m, P + "tool_calls_in_flight")
            if in_use == 1 and waiting == 1 and inflight == 2:
                seen = (in_use, waiting)
                break
            time.sleep(0.02)
        for t in threads:
            t.join(60)
        expect(seen == (1, 1), "never saw one connection in use and one request waiting")
        m = samples(d)
        expect(value(m, P + "pool_waiting", source="demo") == 0, "waiting after")
        expect(value(m, P + "pool_connections_in_use", source="demo") == 0, "in use after")
        expect(value(m, P + "tool_calls_in_flight") == 0, "in flight after")
    finally:
        d.stop()


def test_who_may_scrape(args):
    # the default: loopback and private networks
    d = Daemon(args, config(args)).start()
    try:
        s, _, _ = scrape(d)
        expect(s == 200, "127.0.0.1 may scrape by default: %d" % s)
    finally:
        d.stop()
    d = Daemon(args, config(args, 'allow_from: ["127.0.0.1/32", "127.0.0.2/32"]',
                            metrics='allow_from: ["127.0.0.2/32"]')).start()
    try:
        s, _, text = scrape(d)
        expect(s == 404 and "interactor_connector" not in text, "127.0.0.1 was answered: %d" % s)
        s, _, text = scrape(d, source_address=("127.0.0.2", 0))
        expect(s == 200 and P + "build_info" in text, "127.0.0.2 was refused: %d" % s)
        # a client outside allow_from is closed unread, and counted
        try:
            conn = d.connect(timeout=5, source_address=("127.0.0.3", 0))
            d.request("GET", "/healthz", conn=conn)
            raise AssertionError("127.0.0.3 was answered")
        except (OSError, ConnectionError):
            pass
        s, _, text = scrape(d, source_address=("127.0.0.2", 0))
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        denied = fams[P + "http_connections_denied"].samples[0].value
        expect(denied >= 1, "denied connections: %s" % denied)
        # /metrics never shows up in the request log
        expect("/metrics" not in d.log_text(), "scrapes are logged")
    finally:
        d.stop()
    # metrics.enabled: false: 404 to everyone
    d = Daemon(args, config(args, metrics="enabled: false")).start()
    try:
        s, _, text = scrape(d)
        expect(s == 404 and "interactor_connector" not in text, "disabled /metrics: %d" % s)
    finally:
        d.stop()


def main():
    args = parse_args()
    r = Runner()
    with tempfile.TemporaryDirectory(prefix="cn-metrics-") as tmp:
        r.run("test_counters_follow_calls", test_counters_follow_calls, args, tmp)
    r.run("test_pool_waiting", test_pool_waiting, args)
    r.run("test_who_may_scrape", test_who_may_scrape, args)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
