"""Curated tools end to end: typed parameters validated against the generated
schema (enum, pattern, bounds, dates, defaults, NULL for a missing optional),
bound by position and run through run_query's guard, caps, masking and
execution store; offered where run_query is off; a statement the guard refuses
is a file:line error when the source is up at start, and is refused with a clear
answer (and one log line) at first use when the source was down."""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, SECRET_OLD, Daemon, Runner, config_text, expect, parse_args  # noqa: E402

ARGS = None

TOOLS = """
tools:
  - name: orders_by_status
    description: "Orders in one status, newest first, with their customer"
    source: demo
    statement: >-
      SELECT o.id, o.status, o.ordered_at, c.phone, c.name FROM orders o
      JOIN customers c ON c.id = o.customer_id
      WHERE o.status = $1 AND o.ordered_at >= $2 ORDER BY o.ordered_at DESC LIMIT $3
    parameters:
      - { name: status, type: string, required: true, enum: [pending, paid, shipped, delivered, cancelled] }
      - { name: since, type: date, default: "2000-01-01" }
      - { name: limit, type: integer, minimum: 1, maximum: 1000, default: 5 }
  - name: customers_in
    description: "Customers of one country"
    source: no_adhoc
    statement: >-
      SELECT id, name, is_active FROM customers WHERE country = $1
      AND ($2 IS NULL OR is_active = $2) AND created_at >= $3 ORDER BY id LIMIT $4
    parameters:
      - { name: country, type: string, required: true, pattern: "^[A-Z]{2}$", description: "ISO code" }
      - { name: active, type: boolean }
      - { name: since, type: timestamp, default: "2000-01-01T00:00:00Z" }
      - { name: limit, type: integer, default: 50, maximum: 100 }
  - name: orders_above
    description: "How many orders total more than an amount"
    source: demo
    statement: "SELECT count(*) AS n FROM order_totals WHERE total > $1"
    parameters:
      - { name: amount, type: number, required: true, minimum: 0 }
  - name: all_orders
    description: "Every order (capped)"
    source: capped
    statement: "SELECT * FROM orders"
"""


def error_code(body):
    return body and body.get("error", {}).get("code")


def run(*argv):
    e = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
    p = subprocess.run([ARGS.binary, *argv], capture_output=True, env=e, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def write_config(text):
    d = Daemon(ARGS, text)  # only for its workdir and config file
    return d.config_path, d.workdir


def test_curated_answers(d):
    status, _, raw, body = d.call("orders_by_status", {"status": "paid", "limit": 3})
    expect(status == 200, raw[:300])
    r = body["result"]
    expect(r["row_count"] == 3 and all(row[1] == "paid" for row in r["rows"]), r)
    expect("phone" not in r["columns"], "the hidden column was answered: %s" % r["columns"])
    dates = [row[2] for row in r["rows"]]
    expect(dates == sorted(dates, reverse=True), dates)
    # the registered name reaches the same tool
    status, _, _, body2 = d.call("db_orders_by_status", {"status": "paid", "limit": 3})
    expect(status == 200 and body2["result"]["rows"] == r["rows"], body2)
    # defaults: since and limit
    status, _, _, body = d.call("orders_by_status", {"status": "shipped"})
    expect(status == 200 and body["result"]["row_count"] == 5, body)
    status, _, _, body = d.call("orders_by_status", {"status": "shipped", "since": "2099-01-01"})
    expect(status == 200 and body["result"]["row_count"] == 0, body)


def test_validation(d):
    cases = [
        ({"status": "lost"}, "must be one of"),
        ({}, "parameters.status: is required"),
        ({"status": "paid", "limit": 0}, "must be at least 1"),
        ({"status": "paid", "limit": 2.5}, "must be an integer"),
        ({"status": "paid", "since": "2024-02-30"}, "is not a date"),
        ({"status": "paid", "since": "yesterday"}, "is not a date"),
        ({"status": "paid", "drop": 1}, "parameters.drop: unknown parameter"),
        ({"status": 1}, "must be a string"),
    ]
    for params, want in cases:
        status, _, raw, body = d.call("orders_by_status", params)
        expect(status == 400 and error_code(body) == "invalid_parameters" and want in raw.decode(),
               "%s: %s %s" % (params, status, raw[:300]))
    status, _, raw, body = d.call("customers_in", {"country": "de"})
    expect(status == 400 and "does not match the pattern ^[A-Z]{2}$" in raw.decode(), raw)
    status, _, raw, body = d.call("customers_in", {"country": "DE", "since": "2024-01-01 10:00"})
    expect(status == 400 and "is not a timestamp" in raw.decode(), raw)


def test_types_and_null(d):
    status, _, raw, body = d.call("customers_in", {"country": "DE"})
    expect(status == 200, raw[:300])
    everyone = body["result"]["rows"]
    status, _, _, body = d.call("customers_in", {"country": "DE", "active": True})
    active = body["result"]["rows"]
    status, _, _, body = d.call("customers_in", {"country": "DE", "active": False})
    inactive = body["result"]["rows"]
    expect(len(everyone) == len(active) + len(inactive) and everyone, (len(everyone), len(active), len(inactive)))
    expect(all(row[2] in (1, True) for row in active), active)
    status, _, _, body = d.call("customers_in", {"country": "DE", "since": "2999-01-01T00:00:00+02:00"})
    expect(status == 200 and body["result"]["row_count"] == 0, body)
    status, _, raw, low = d.call("orders_above", {"amount": 0})
    status2, _, _, high = d.call("orders_above", {"amount": 250.5})
    expect(status == 200 and status2 == 200, raw)
    expect(low["result"]["rows"][0][0] > high["result"]["rows"][0][0] >= 0, (low, high))


def test_run_query_off_curated_on(d):
    status, _, raw, body = d.call("run_query", {"source": "no_adhoc", "query": "SELECT 1"})
    expect(status == 400 and error_code(body) == "run_query_disabled" and "curated tools" in raw.decode(), raw)
    status, _, _, body = d.call("customers_in", {"country": "FR", "limit": 2})
    expect(status == 200 and body["result"]["row_count"] <= 2, body)


def test_caps_and_store(d):
    status, _, raw, body = d.call("all_orders", {})
    expect(status == 200 and len(raw) <= 2048 and body["result"]["truncated"] is True, (status, len(raw)))
    exec_id = "exec_curated_replay_%d" % time.time_ns()
    first = d.call("orders_by_status", {"status": "paid"}, exec_id=exec_id)
    again = d.call("orders_by_status", {"status": "paid"}, exec_id=exec_id)
    expect(first[0] == 200 and first[2] == again[2], "a replay did not get the stored answer")


def test_unknown_tool_lists_the_catalog(d):
    status, _, raw, body = d.call("nosuch", {})
    expect(status == 404 and "db_orders_by_status" in raw.decode() and "db_run_query" in raw.decode(), raw)


def test_tools_command():
    path, _ = write_config(config_text(ARGS, "@WORKDIR@") + TOOLS)
    rc, out, err = run("tools", "--config", path)
    expect(rc == 0, err)
    tools = {t["name"]: t for t in json.loads(out)}
    expect(list(tools)[:4] == ["db_list_data_sources", "db_describe_schema", "db_search_schema", "db_run_query"],
           list(tools))
    p = tools["db_customers_in"]["parameters"]
    expect(p["required"] == ["country"] and p["properties"]["active"] == {"type": "boolean"} and
           p["properties"]["since"]["format"] == "date-time" and
           p["properties"]["country"]["pattern"] == "^[A-Z]{2}$", p)
    expect("callback_url" not in tools["db_customers_in"], "no public_url: no callback_url")
    # with every source's run_query off, run_query is not offered
    text = config_text(ARGS, "@WORKDIR@").replace("    limits: { max_rows: 1000, max_result_bytes: 2048",
                                                   "    run_query: false\n    limits: { max_rows: 1000, "
                                                   "max_result_bytes: 2048")
    text = text.replace("    pool: { size: 4 }", "    run_query: false\n    pool: { size: 4 }")
    path, _ = write_config(text + TOOLS)
    rc, out, err = run("tools", "--config", path)
    names = [t["name"] for t in json.loads(out)]
    expect(rc == 0 and "db_run_query" not in names and "db_orders_by_status" in names, names)


def test_guard_refusal_is_a_config_error():
    bad = TOOLS + """
  - name: wipe
    description: "not read-only"
    source: demo
    statement: "DELETE FROM orders WHERE id = $1"
    parameters:
      - { name: id, type: integer, required: true }
"""
    path, workdir = write_config(config_text(ARGS, "@WORKDIR@") + bad)
    with open(path) as f:
        line = next(i for i, l in enumerate(f.read().splitlines(), 1) if "DELETE FROM" in l)
    rc, out, err = run("check-config", "--quiet", "--config", path)
    want = "%s:%d: tools[4].statement: the guard of source 'demo' refuses it" % (path, line)
    expect(rc == 1 and want in out and "DELETE" in out, out + err)
    d = Daemon(ARGS, config_text(ARGS, "@WORKDIR@") + bad)
    rc = None
    try:
        d.start()
    except AssertionError as e:
        rc = str(e)
    expect(rc and "daemon exited" in rc and "tools[4].statement: the guard of source 'demo' refuses it" in rc,
           rc)
    # a document for an SQL source is refused when the drivers load
    doc = TOOLS + """
  - name: as_document
    description: "wrong kind"
    source: demo
    statement: { find: orders }
"""
    path, _ = write_config(config_text(ARGS, "@WORKDIR@") + doc)
    rc, out, err = run("tools", "--config", path)
    expect(rc == 1 and "tools[4].statement: source 'demo' (sqlite) takes one SQL statement" in err, err)


def test_source_down_at_start_checked_at_first_use():
    work = Daemon(ARGS, "").workdir
    late = os.path.join(work, "late.db")
    extra = """  - name: late
    driver: sqlite
    dsn: "%s"
""" % late
    tools = """
tools:
  - name: late_wipe
    description: "not read-only"
    source: late
    statement: "DELETE FROM orders"
  - name: late_count
    description: "orders"
    source: late
    statement: "SELECT count(*) FROM orders"
"""
    d = Daemon(ARGS, config_text(ARGS, "@WORKDIR@", extra_source=extra) + tools).start()
    try:
        expect("tools[0] 'late_wipe': its statement is checked at first use" in d.log_text(), d.log_text())
        status, _, _, body = d.call("late_wipe", {})
        expect(status == 503 and error_code(body) == "data_source_disconnected", body)
        shutil.copy(ARGS.demo_db, late)
        time.sleep(5.5)  # the source's retry pause
        for _ in range(2):
            status, _, raw, body = d.call("late_wipe", {})
            expect(status == 400 and error_code(body) == "query_rejected" and
                   "operator must fix it" in raw.decode(), raw)
        log = d.log_text()
        expect(log.count("tools[0].statement: the guard of source 'late' refuses it") == 1, log)
        status, _, _, body = d.call("late_count", {})
        expect(status == 200 and body["result"]["rows"][0][0] > 0, body)
    finally:
        d.stop()


def main():
    global ARGS
    ARGS = parse_args()
    r = Runner()
    d = Daemon(ARGS, config_text(ARGS, "@WORKDIR@") + TOOLS).start()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_") and fn.__code__.co_argcount == 1:
                r.run(name, fn, d)
    finally:
        code = d.stop()
    for name, fn in list(globals().items()):
        if name.startswith("test_") and fn.__code__.co_argcount == 0:
            r.run(name, fn)
    if code != 0:
        print("FAIL daemon exit status %s" % code)
        r.failed += 1
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
