"""End to end on MongoDB: the daemon with a mongodb source (the wire-protocol test server of
tests/support/mongo.sh), callbacks signed the way Interactor signs them: run_query with a
command document as an object and as a string, describe_schema with nested field paths,
a hidden field masked, the guard's refusals, 429 with Retry-After when the pool is full, a
query over its time budget, 503 while the server is down and recovery after, and the CLI's
query."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402

import pymongo  # noqa: E402  (Debian's python3-pymongo)


def config(args, mappings):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: mongo
    driver: mongodb
    dsn: "${{CN_TEST_MONGO_URI}}"
    description: "Shop documents"
    mappings: "{mappings}"
    pool: {{ size: 1 }}
    limits: {{ max_rows: 50, max_result_bytes: 60000, timeout_ms: 1500 }}
  - name: mongo_slow
    driver: mongodb
    dsn: "${{CN_TEST_MONGO_URI}}"
    pool: {{ size: 1 }}
    limits: {{ max_rows: 50, max_result_bytes: 60000, timeout_ms: 6000 }}
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
""" + CURATED


CURATED = """
tools:
  - name: orders_since
    description: "Orders in one status placed since a time, oldest first"
    source: mongo
    statement:
      find: orders
      filter: { status: { $param: 1 }, placed_at: { $gte: { $date: { $param: 2 } } } }
      projection: { total: 1, placed_at: 1 }
      sort: { placed_at: 1 }
    parameters:
      - { name: status, type: string, required: true, enum: [pending, paid, shipped, delivered, cancelled] }
      - { name: since, type: timestamp, required: true }
  - name: orders_with_quantity
    description: "How many orders have at least this quantity"
    source: mongo
    statement: '{"count": "orders", "query": {"quantity": {"$gte": {"$param": 1}}}}'
    parameters:
      - { name: min_quantity, type: integer, default: 0, minimum: 0 }
"""


def code(parsed):
    return parsed and parsed.get("error", {}).get("code")


def admin():
    return pymongo.MongoClient(os.environ["CN_TEST_MONGO_URI"], serverSelectionTimeoutMS=5000).admin


def failpoint(mode, commands, **data):
    data = dict(data, failCommands=commands, appName="interactor-connector")
    admin().command({"configureFailPoint": "failCommand", "mode": mode, "data": data})


def failpoint_off():
    admin().command({"configureFailPoint": "failCommand", "mode": "off"})


def mongo_sh(what):
    support = os.path.join(ARGS.source_dir, "tests", "support", "mongo.sh")
    subprocess.run([support, what, os.environ["CN_TEST_MONGO_DIR"]], check=True,
                   stdout=subprocess.DEVNULL)


def test_list_sources(d):
    s, _, raw, body = d.call("list_data_sources", {})
    expect(s == 200, raw[:300])
    src = {x["name"]: x for x in body["result"]["sources"]}
    expect(src["mongo"]["type"] == "mongodb", src["mongo"])
    expect(src["mongo"]["status"] == "available", src["mongo"])


def test_describe(d):
    s, _, raw, body = d.call("describe_schema", {"source": "mongo", "tables": ["orders", "customers"]})
    expect(s == 200, raw[:300])
    tables = {t["name"]: t for t in body["result"]["tables"]}
    orders, customers = tables["orders"], tables["customers"]
    expect(orders["kind"] == "collection" and orders["row_count"] == 60, orders.get("row_count"))
    expect(orders["description"] == "Orders of the shop", orders.get("description"))
    cols = {c["name"]: c for c in orders["columns"]}
    expect(cols["items[].sku"]["type"] == "string", cols.get("items[].sku"))
    expect(cols["items[].price"].get("description") == "Unit price", cols["items[].price"])
    expect(orders["primary_key"] == ["_id"], orders["primary_key"])
    names = [c["name"] for c in customers["columns"]]
    for hidden in ("email", "ssn", "address.street"):
        expect(hidden not in names, "hidden field %s listed" % hidden)
    expect("address.city" in names, names)
    expect("email_1" not in [i["name"] for i in customers["indexes"]], "index on a hidden field")
    s, _, raw, body = d.call("describe_schema", {"source": "mongo"})
    expect("secrets" not in [t["name"] for t in body["result"]["tables"]], "hidden collection listed")


def test_object_and_string_queries(d):
    query = {"find": "orders", "filter": {"status": {"$param": 1}},
             "projection": {"total": 1, "placed_at": 1, "items.sku": 1}, "sort": {"placed_at": 1}}
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": query,
                                           "parameters": ["shipped"]})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["columns"] == ["_id", "total", "placed_at", "items"], r["columns"])
    expect(r["column_types"][1] == "decimal", r["column_types"])
    expect(r["row_count"] == 12 and not r["truncated"], r["row_count"])
    expect(r["rows"][0][2].endswith("Z") and "T" in r["rows"][0][2], r["rows"][0])
    expect(isinstance(r["rows"][0][3], list) and "sku" in r["rows"][0][3][0], r["rows"][0][3])
    # the same command as a string
    s2, _, raw2, body2 = d.call("run_query", {"source": "mongo", "query": json.dumps(query),
                                              "parameters": ["shipped"]})
    expect(s2 == 200 and body2["result"]["rows"] == r["rows"], raw2[:300])
    # aggregate, count, distinct
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {
        "aggregate": "orders", "pipeline": [{"$group": {"_id": "$status", "n": {"$sum": 1}}},
                                            {"$sort": {"_id": 1}}]}})
    expect(s == 200 and body["result"]["rows"][0] == ["cancelled", 12], raw[:300])
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {
        "count": "orders", "query": {"quantity": {"$gte": {"$param": 1}}}}, "parameters": [0]})
    expect(s == 200 and body["result"]["rows"] == [[60]], raw[:300])
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {
        "distinct": "orders", "key": "status"}, "max_rows": 2})
    expect(s == 200 and body["result"]["row_count"] == 2 and body["result"]["truncated"], raw[:300])
    # a text parameter stays a value
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {
        "find": "orders", "filter": {"status": {"$param": 1}}}, "parameters": ["$ne"]})
    expect(s == 200 and body["result"]["row_count"] == 0, raw[:300])


def test_curated_documents(d):
    s, _, raw, body = d.call("orders_since", {"status": "shipped", "since": "2024-01-01T00:00:00Z"})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["row_count"] == 12 and r["columns"] == ["_id", "total", "placed_at"], r)
    dates = [row[2] for row in r["rows"]]
    expect(dates == sorted(dates), dates)
    s, _, raw, body = d.call("db_orders_since", {"status": "shipped", "since": "2099-01-01T00:00:00Z"})
    expect(s == 200 and body["result"]["row_count"] == 0, raw[:300])
    s, _, raw, body = d.call("orders_since", {"status": "shipped", "since": "soon"})
    expect(s == 400 and code(body) == "invalid_parameters" and "is not a timestamp" in raw.decode(), raw)
    s, _, raw, body = d.call("orders_with_quantity", {})
    expect(s == 200 and body["result"]["rows"] == [[60]], raw[:300])
    s, _, raw, body = d.call("orders_with_quantity", {"min_quantity": 1000})
    expect(s == 200 and body["result"]["rows"] == [[0]], raw[:300])


def test_curated_refused_document_is_a_config_error(d):
    bad = CURATED + """
  - name: copy_out
    description: "writes"
    source: mongo
    statement: { aggregate: orders, pipeline: [ { $out: stolen } ], cursor: {} }
"""
    with open(d.config_path) as f:
        d2 = Daemon(ARGS, f.read().replace(CURATED, bad))
    env = dict(os.environ, E2E_SECRET=d.env["E2E_SECRET"])
    p = subprocess.run([ARGS.binary, "check-config", "--quiet", "--config", d2.config_path],
                       capture_output=True, env=env, timeout=60)
    out = p.stdout.decode()
    expect(p.returncode == 1 and "tools[2].statement: the guard of source 'mongo' refuses it" in out and
           "$out" in out, out + p.stderr.decode())


def test_object_query_on_sql_source(d):
    s, _, raw, body = d.call("run_query", {"source": "demo", "query": {"find": "customers"}})
    expect(s == 400 and code(body) == "invalid_parameters" and "SQL" in raw.decode(), raw[:300])


def test_hidden_masked(d):
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {"find": "customers"}})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect("email" not in r["columns"] and "ssn" not in r["columns"], r["columns"])
    text = raw.decode()
    expect("@example.com" not in text and "street" not in text, "hidden value returned")
    expect("Berlin" in text, "visible value missing")
    for q in ({"find": "customers", "filter": {"email": {"$regex": "^a"}}},
              {"aggregate": "customers", "pipeline": [{"$project": {"a": "$address"}}]},
              {"aggregate": "customers", "pipeline": [{"$replaceWith": "$$ROOT"}]},
              {"find": "secrets"}):
        s, _, raw, body = d.call("run_query", {"source": "mongo", "query": q})
        expect(s == 400 and code(body) == "query_rejected", "%s -> %s %s" % (q, s, raw[:200]))


def test_guard(d):
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {
        "aggregate": "orders", "pipeline": [{"$match": {}}, {"$out": "stolen"}]}})
    expect(s == 400 and code(body) == "query_rejected", raw[:300])
    expect("pipeline[1]" in body["error"]["message"], body["error"]["message"])
    s, _, raw, body = d.call("run_query", {"source": "mongo",
                                           "query": '{"find": "orders", "filter": {"\\u0024where": "1"}}'})
    expect(s == 400 and code(body) == "query_rejected", raw[:300])
    # duplicate keys survive the object form (cJSON keeps both) and are refused
    exec_id = "exec_dup_%d" % time.time_ns()
    body_text = ('{"tool_name": "run_query", "parameters": {"source": "mongo", "query": '
                 '{"find": "orders", "find": "secrets"}}, "execution_id": "%s", '
                 '"timestamp": "%s"}' % (exec_id, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    s, _, raw, body = d.call("run_query", None, exec_id=exec_id, body=body_text.encode())
    expect(s == 400 and "duplicate key" in raw.decode(), raw[:300])
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {"insert": "orders"}})
    expect(s == 400 and code(body) == "query_rejected", raw[:300])
    n = admin().client["connector_test"]["orders"].count_documents({})
    expect(n == 60, "orders changed: %d documents" % n)


def test_timeout(d):
    failpoint("alwaysOn", ["find"], blockConnection=True, blockTimeMS=4000)
    try:
        s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {"find": "orders"}})
    finally:
        failpoint_off()
    expect(s == 400 and code(body) == "query_timeout", "%s %s" % (s, raw[:300]))


def test_pool_full_is_429(d):
    # pool.size 1 and a 6 s budget: a find the server holds for 4 s keeps the one connection; a
    # second request waits at most 2 s for it and is answered 429 with Retry-After
    failpoint({"times": 1}, ["find"], blockConnection=True, blockTimeMS=4000)
    results = {}

    def slow():
        results["slow"] = d.call("run_query", {"source": "mongo_slow", "query": {"find": "orders"}})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    s, hdrs, raw, body = d.call("run_query", {"source": "mongo_slow", "query": {"count": "orders"}})
    waited = time.time() - t0
    t.join()
    failpoint_off()
    expect(s == 429 and code(body) == "rate_limit_exceeded", "%s %s" % (s, raw[:200]))
    expect(hdrs.get("Retry-After", "").isdigit(), hdrs)
    expect(1.5 < waited < 3.5, "waited %.2f s" % waited)
    expect(results["slow"][0] == 200, results["slow"][:3])


def test_server_down_is_503_then_recovers(d):
    mongo_sh("pause")
    try:
        s, hdrs, raw, body = d.call("run_query", {"source": "mongo", "query": {"count": "orders"}})
    finally:
        mongo_sh("resume")
    expect(s == 503 and code(body) == "data_source_disconnected", "%s %s" % (s, raw[:300]))
    expect(hdrs.get("Retry-After", "").isdigit(), hdrs)
    s, _, raw, body = d.call("run_query", {"source": "mongo", "query": {"count": "orders"}})
    expect(s == 200 and body["result"]["rows"] == [[60]], "%s %s" % (s, raw[:300]))


def test_cli_query(d):
    out = subprocess.run([ARGS.binary, "query", "--config", d.config_path, "mongo",
                          '{"find": "orders", "filter": {"status": {"$param": 1}}, "limit": 2}',
                          "paid"], capture_output=True, text=True, env=d.env, timeout=60)
    expect(out.returncode == 0, out.stderr[-500:])
    expect('"row_count":2' in out.stdout, out.stdout[:300])


def main():
    global ARGS
    args = ARGS = parse_args()
    if not os.environ.get("CN_TEST_MONGO_URI"):
        print("CN_TEST_MONGO_URI is not set: start the test server with tests/support/mongo.sh "
              "(scripts/test.sh does it)")
        print("0 passed, 1 failed")
        return 1
    mdir = tempfile.mkdtemp(prefix="cn-e2e-mongo-")
    mappings = os.path.join(mdir, "mongo.yaml")
    with open(mappings, "w") as f:
        f.write("mappings:\n"
                "  orders: { description: \"Orders of the shop\" }\n"
                "  orders.items.price: { description: \"Unit price\" }\n"
                "  customers.email: { hidden: true }\n"
                "  customers.ssn: { hidden: true }\n"
                "  customers.address.street: { hidden: true }\n"
                "  secrets: { hidden: true }\n")
    d = Daemon(args, config(args, mappings)).start()
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                r.run(name, fn, d)
    finally:
        d.stop()
    return r.finish()


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
