"""End to end: the daemon on a free port, signed callbacks sent as Interactor
sends them, statuses and bodies checked."""

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (SECRET, SECRET_OLD, Daemon, Runner, config_text, expect,  # noqa: E402
                     iso, parse_args, sign)

# What conf/mappings/demo.yaml hides.
HIDDEN_COLUMN = ("customers", "phone")
HIDDEN_TABLE = "internal_audit_log"
# A value that must never reach the log.
PARAM_CANARY = "canary-param-value-7f3a"
SLOW_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")
# Takes a while but finishes within the test source's 1.5 s budget.
MEDIUM_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) "
              "SELECT count(*), random() FROM c")


def error_code(parsed):
    return parsed and parsed.get("error", {}).get("code")


def test_describe_schema(d):
    status, hdrs, raw, body = d.call("describe_schema", {"source": "demo"})
    expect(status == 200, "status %s %s" % (status, raw[:300]))
    expect(hdrs.get("Content-Type") == "application/json", "content type")
    tables = {t["name"]: t for t in body["result"]["tables"]}
    for name in ("customers", "products", "orders", "order_items"):
        expect(name in tables, "table %s missing" % name)
    expect(HIDDEN_TABLE not in tables, "hidden table listed")
    cols = [c["name"] for c in tables[HIDDEN_COLUMN[0]]["columns"]]
    expect(HIDDEN_COLUMN[1] not in cols, "hidden column listed")
    expect(tables["customers"].get("description"), "mapping description missing")
    expect(tables["customers"].get("synonyms"), "mapping synonyms missing")
    fks = tables["orders"]["foreign_keys"]
    expect(any(fk["references"]["table"] == "customers" for fk in fks), "orders -> customers FK")


def test_describe_schema_filter(d):
    status, _, raw, body = d.call("describe_schema", {"source": "demo", "tables": ["orders"]})
    expect(status == 200, raw[:200])
    expect([t["name"] for t in body["result"]["tables"]] == ["orders"], "filter")


def test_list_data_sources(d):
    status, _, raw, body = d.call("list_data_sources", {})
    expect(status == 200, raw[:200])
    src = {s["name"]: s for s in body["result"]["sources"]}
    expect(set(src) == {"demo", "capped", "no_adhoc"}, src)
    demo = src["demo"]
    expect(demo["type"] == "sqlite" and demo["description"] == "Demo sales database", demo)
    expect(demo["status"] == "available" and demo["table_count"] >= 4, demo)
    # the hidden table counts only where mappings hide it
    expect(src["no_adhoc"]["table_count"] == demo["table_count"] + 1, src)


def test_byte_cap(d):
    status, _, raw, body = d.call("run_query", {"source": "capped",
                                                "query": "SELECT * FROM customers"})
    expect(status == 200, raw[:200])
    expect(len(raw) <= 2048, "answer is %d bytes" % len(raw))
    r = body["result"]
    expect(r["truncated"] is True and 0 < r["row_count"] == len(r["rows"]), r)


def test_run_query_disabled(d):
    status, _, raw, body = d.call("run_query", {"source": "no_adhoc", "query": "SELECT 1"})
    expect(status == 400 and error_code(body) == "run_query_disabled", raw[:200])


def test_run_query(d):
    status, _, raw, body = d.call("run_query", {
        "source": "demo",
        "query": "SELECT id, name FROM customers WHERE id <= $1 AND name <> $2 ORDER BY id",
        "parameters": [3, PARAM_CANARY]})
    expect(status == 200, raw[:300])
    r = body["result"]
    expect(r["columns"] == ["id", "name"], r["columns"])
    expect(len(r["column_types"]) == 2, r)
    expect(r["row_count"] == 3 and [row[0] for row in r["rows"]] == [1, 2, 3], r)
    expect(r["truncated"] is False and isinstance(r["execution_time_ms"], int), r)


def test_hidden_column_by_alias(d):
    col = HIDDEN_COLUMN[1]
    status, _, raw, body = d.call("run_query", {
        "source": "demo", "query": "SELECT id, %s AS contact FROM customers LIMIT 2" % col})
    expect(status == 200, raw[:300])
    expect(body["result"]["columns"] == ["id"], body["result"]["columns"])
    expect(all(len(row) == 1 for row in body["result"]["rows"]), "masked cells left in rows")


def test_hidden_table_denied(d):
    status, _, raw, body = d.call("run_query", {"source": "demo",
                                                "query": "SELECT * FROM %s" % HIDDEN_TABLE})
    expect(status == 400 and error_code(body) in ("query_rejected", "query_execution_failed"), raw[:300])


def test_row_cap(d):
    status, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT id FROM orders",
                                                "max_rows": 3})
    expect(status == 200, raw[:200])
    expect(body["result"]["row_count"] == 3 and body["result"]["truncated"] is True, body)


def test_guard_rejects(d):
    for sql in ("DELETE FROM customers", "SELECT 1; DROP TABLE customers",
                "ATTACH DATABASE '/tmp/x.db' AS x", "PRAGMA query_only = 0"):
        status, _, raw, body = d.call("run_query", {"source": "demo", "query": sql})
        expect(status == 400 and error_code(body) == "query_rejected", "%s -> %s %s" % (sql, status, raw[:200]))
        expect(body["error"]["message"], "rejection without a reason")


def test_query_error(d):
    status, _, raw, body = d.call("run_query", {"source": "demo",
                                                "query": "SELECT no_such_column FROM customers"})
    expect(status == 400 and error_code(body) in ("query_execution_failed", "query_rejected"), raw[:300])
    expect("no_such_column" in body["error"]["message"], "database message missing")


def test_timeout(d):
    t0 = time.time()
    status, _, raw, body = d.call("run_query", {"source": "demo", "query": SLOW_SQL})
    expect(status == 400 and error_code(body) == "query_timeout", raw[:300])
    expect(time.time() - t0 < 10, "timeout took %.1f s" % (time.time() - t0))


def test_unknown_source(d):
    status, _, raw, body = d.call("run_query", {"source": "nope", "query": "SELECT 1"})
    expect(status == 400 and error_code(body) == "unknown_source", raw[:200])


def test_invalid_parameters(d):
    status, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 1", "max_rows": 0})
    expect(status == 400 and error_code(body) == "invalid_parameters", raw[:200])
    status, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 1", "bogus": 1})
    expect(status == 400 and error_code(body) == "invalid_parameters", raw[:200])
    status, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT $1",
                                                "parameters": [{"a": 1}]})
    expect(status == 400 and error_code(body) == "invalid_parameters", raw[:200])


def test_wrong_secret(d):
    status, _, raw, body = d.call("list_data_sources", {}, secret="another-secret-that-is-long-enough")
    expect(status == 401 and error_code(body) == "invalid_signature", raw[:200])


def test_rotation_second_secret(d):
    status, _, raw, _ = d.call("list_data_sources", {}, secret=SECRET_OLD)
    expect(status == 200, raw[:200])


def test_tampered_body(d):
    status, _, raw, body = d.call("list_data_sources", {},
                                  tamper=lambda b: b.replace(b"room_e2e", b"room_e2f"))
    expect(status == 401 and error_code(body) == "invalid_signature", raw[:200])


def test_stale_and_future(d):
    now = time.time()
    for ts, ok in ((now - 301, False), (now + 301, False), (now - 250, True), (now + 250, True)):
        status, _, raw, _ = d.call("list_data_sources", {}, ts=ts)
        expect((status == 200) == ok, "timestamp %+d s -> %s %s" % (ts - now, status, raw[:200]))


def test_missing_and_malformed_headers(d):
    def drop(name):
        return lambda h: {k: v for k, v in h.items() if k != name}
    for override in (drop("X-Interactor-Signature"), drop("X-Interactor-Timestamp"),
                     lambda h: dict(h, **{"X-Interactor-Signature": "sha1=abc"}),
                     lambda h: dict(h, **{"X-Interactor-Signature": h["X-Interactor-Signature"][:-2]}),
                     lambda h: dict(h, **{"X-Interactor-Timestamp": "yesterday"})):
        status, _, raw, body = d.call("list_data_sources", {}, headers_override=override)
        expect(status == 401 and error_code(body) == "invalid_signature", raw[:200])


def test_replay_returns_stored_answer(d):
    exec_id = "exec_replay_%d" % time.time_ns()
    params = {"source": "demo", "query": "SELECT random() AS r"}
    s1, _, raw1, _ = d.call("run_query", params, exec_id=exec_id)
    s2, _, raw2, _ = d.call("run_query", params, exec_id=exec_id)
    expect(s1 == 200 and s2 == 200, (s1, s2))
    expect(raw1 == raw2, "replay ran the query again")
    # a new execution_id runs again (random() differs)
    _, _, raw3, _ = d.call("run_query", params)
    expect(raw3 != raw1, "a new execution_id did not run")
    # an error answer is replayed too
    bad = {"source": "demo", "query": "DELETE FROM orders"}
    e1 = d.call("run_query", bad, exec_id=exec_id + "_bad")
    e2 = d.call("run_query", bad, exec_id=exec_id + "_bad")
    expect(e1[0] == e2[0] == 400 and e1[2] == e2[2], "error replay")
    d.replayed = (exec_id, raw1)


def test_concurrent_duplicates_run_once(d):
    exec_id = "exec_dup_%d" % time.time_ns()
    params = {"source": "demo", "query": MEDIUM_SQL}
    results = []

    def one():
        results.append(d.call("run_query", params, exec_id=exec_id))
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(all(r[0] == 200 for r in results), [(r[0], r[2][:100]) for r in results])
    expect(len({r[2] for r in results}) == 1, "duplicates ran more than once")


def test_slow_query_holds_up_only_its_own_connection(d):
    """Kept-alive connections are answered while another one's query runs to its time limit."""
    conns = [d.connect() for _ in range(16)]
    try:
        for c in conns:  # every connection open and served once before the slow query
            status, _, raw, _ = d.call("list_data_sources", {}, conn=c)
            expect(status == 200, raw[:200])
        slow = {}

        def run_slow():
            slow["r"] = d.call("run_query", {"source": "demo", "query": SLOW_SQL}, conn=conns[0])
        t = threading.Thread(target=run_slow)
        t.start()
        time.sleep(0.2)  # the slow query has started
        worst = 0.0
        for _ in range(3):
            for c in conns[1:]:
                t0 = time.time()
                status, _, raw, _ = d.call("list_data_sources", {}, conn=c)
                worst = max(worst, time.time() - t0)
                expect(status == 200, raw[:200])
        still_running = t.is_alive()
        t.join()
    finally:
        for c in conns:
            c.close()
    expect(still_running, "the slow query ended before the quick calls did")
    expect(slow["r"][0] == 400 and error_code(slow["r"][3]) == "query_timeout", slow["r"][2][:200])
    expect(worst < 0.5, "a quick call waited %.2f s behind the slow query" % worst)


def test_oversize(d):
    body = b'{"tool_name":"run_query","pad":"' + b"x" * (128 * 1024) + b'"}'
    status, _, raw = d.request("POST", "/v1/tools/run_query", body,
                               {"Content-Type": "application/json"})
    expect(status == 413 and json.loads(raw)["error"]["code"] == "payload_too_large", (status, raw[:200]))


def test_malformed_json(d):
    body = b'{"tool_name": "run_query", "execution_id": '
    status, _, raw, parsed = d.call("run_query", None, body=body)
    expect(status == 400 and error_code(parsed) == "invalid_request", raw[:200])


def test_nul_in_a_string_is_refused(d):
    # cJSON would decode \u0000 into a NUL that C strings cut at: a parameter "abc\u0000def"
    # would run as "abc". An escaped backslash before u0000 is ordinary text and still runs.
    s, _, raw, parsed = d.call("run_query", {"source": "demo", "query": "SELECT $1 AS v",
                                             "parameters": ["abc\u0000def"]})
    expect(s == 400 and error_code(parsed) == "invalid_parameters" and "NUL" in raw.decode(), raw[:200])
    s, _, raw, parsed = d.call("run_query", {"source": "demo", "query": "SELECT 1\u0000; DELETE FROM t"})
    expect(s == 400 and error_code(parsed) == "invalid_parameters", raw[:200])
    s, _, raw, parsed = d.call("run_query", {"source": "demo", "query": "SELECT $1 AS v",
                                             "parameters": ["abc\\u0000def"]})
    expect(s == 200 and parsed["result"]["rows"] == [["abc\\u0000def"]], raw[:200])


def test_missing_execution_id(d):
    body = json.dumps({"tool_name": "list_data_sources", "parameters": {}}).encode()
    status, _, raw, parsed = d.call("list_data_sources", None, body=body,
                                    headers_override=lambda h: {k: v for k, v in h.items()
                                                                if k != "X-Interactor-Request-Id"})
    expect(status == 400 and error_code(parsed) == "invalid_request", raw[:200])


def test_tool_name_mismatch(d):
    status, _, raw, parsed = d.call("list_data_sources", {}, path_tool="describe_schema")
    expect(status == 400 and error_code(parsed) == "invalid_request", raw[:200])


def test_unknown_tool(d):
    status, _, raw, parsed = d.call("drop_everything", {})
    expect(status == 404 and error_code(parsed) == "unknown_tool", raw[:200])


def test_other_endpoints(d):
    status, hdrs, _ = d.request("GET", "/v1/tools/run_query")
    expect(status == 405 and hdrs.get("Allow") == "POST", "GET on a tool: %s" % status)
    status, _, _ = d.request("GET", "/nope")
    expect(status == 404, "unknown path: %s" % status)
    status, _, raw = d.request("GET", "/healthz")
    expect(status == 200 and json.loads(raw)["status"] == "ok", raw)


def test_log_lines(d):
    text = d.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    reqs = [entry for entry in lines if entry.get("msg") == "request"]
    expect(len(reqs) >= 10, "request log lines: %d" % len(reqs))
    for entry in reqs:
        for key in ("request_id", "tool", "status", "duration_ms"):
            expect(key in entry, "log line lacks %s: %s" % (key, entry))
    expect(any(e.get("source") == "demo" and e["tool"] == "run_query" for e in reqs), "source missing")
    for secret in (SECRET, SECRET_OLD, PARAM_CANARY, "SELECT"):
        expect(secret not in text, "log contains %r" % secret)


def test_replay_survives_restart(d):
    d.stop()
    d.start()
    exec_id, raw1 = d.replayed
    s, _, raw2, _ = d.call("run_query", {"source": "demo", "query": "SELECT random() AS r"}, exec_id=exec_id)
    expect(s == 200 and raw2 == raw1, "answer lost across restart")


def test_sigterm_finishes_inflight(d):
    result = {}

    def slow():
        result["r"] = d.call("run_query", {"source": "demo", "query": MEDIUM_SQL})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    rc = d.stop(signal.SIGTERM)
    t.join()
    expect(rc == 0, "exit status %s\n%s" % (rc, d.log_text()[-2000:]))
    expect("r" in result and result["r"][0] == 200, "in-flight request: %s" % (result.get("r", ["none"])[0],))


def main():
    args = parse_args()
    d = Daemon(args, config_text(args, "@WORKDIR@")).start()
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_") and name not in ("test_log_lines", "test_replay_survives_restart",
                                                         "test_sigterm_finishes_inflight"):
                r.run(name, fn, d)
        r.run("test_log_lines", test_log_lines, d)
        if hasattr(d, "replayed"):
            r.run("test_replay_survives_restart", test_replay_survives_restart, d)
        r.run("test_sigterm_finishes_inflight", test_sigterm_finishes_inflight, d)
    finally:
        d.stop(signal.SIGKILL)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
