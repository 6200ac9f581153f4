"""End to end on PostgreSQL: the daemon with a postgres source (the
SELECT-only role of tests/support/pg.sh), signed callbacks over HTTP."""

import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402

SLOW = "SELECT count(*) FROM generate_series(1, 40000000) AS g(x) WHERE x % 7 = 3"


def config(args, mappings):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: pg
    driver: postgres
    dsn: "${{CN_TEST_PG_DSN}}"
    mappings: "{mappings}"
    pool: {{ size: 1 }}
    limits: {{ max_rows: 100, max_result_bytes: 60000, timeout_ms: 8000 }}
"""


def code(parsed):
    return parsed and parsed.get("error", {}).get("code")


def test_describe(d):
    s, _, raw, body = d.call("describe_schema", {"source": "pg", "tables": ["crm.customers"]})
    expect(s == 200, raw[:300])
    t = body["result"]["tables"][0]
    expect(t["schema"] == "crm" and t["name"] == "customers", t)
    expect("email" not in [c["name"] for c in t["columns"]], "hidden column listed")
    expect(t["description"] == "Accounts of the shop's customers", t.get("description"))


def test_query_types_and_masking(d):
    # SELECT * brings the hidden column along: it is masked by its origin
    s, _, raw, body = d.call("run_query", {
        "source": "pg",
        "query": "SELECT * FROM crm.customers WHERE id <= $1 ORDER BY id",
        "parameters": [2]})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["columns"] == ["id", "name", "country", "created_at"], r["columns"])
    expect(r["row_count"] == 2 and r["rows"][0][0] == 1, r)
    expect("T" in r["rows"][0][3], "timestamp not ISO 8601: %r" % r["rows"][0][3])
    # naming it, aliased or in a filter, is refused by the guard
    for sql in ("SELECT email AS contact FROM crm.customers",
                "SELECT id FROM crm.customers WHERE email LIKE 'a%'"):
        s, _, raw, body = d.call("run_query", {"source": "pg", "query": sql})
        expect(s == 400 and code(body) == "query_rejected" and "email" in raw.decode(), raw[:200])
    s, _, raw, body = d.call("run_query", {
        "source": "pg",
        "query": "SELECT id, name, created_at FROM crm.customers WHERE id <= $1 ORDER BY id",
        "parameters": [2]})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["columns"] == ["id", "name", "created_at"], r["columns"])
    expect(r["column_types"][0] == "integer", r["column_types"])
    expect(r["row_count"] == 2 and r["rows"][0][0] == 1, r)
    expect("T" in r["rows"][0][2], "timestamp not ISO 8601: %r" % r["rows"][0][2])


def test_guard_and_readonly(d):
    for sql in ("DELETE FROM crm.customers", "SELECT pg_sleep(5)",
                "WITH x AS (DELETE FROM crm.customers RETURNING 1) SELECT * FROM x"):
        s, _, raw, body = d.call("run_query", {"source": "pg", "query": sql})
        expect(s == 400 and code(body) == "query_rejected", "%s -> %s %s" % (sql, s, raw[:200]))


def test_pool_full_is_429(d):
    results = {}

    def slow():
        results["slow"] = d.call("run_query", {"source": "pg", "query": SLOW})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    s, hdrs, raw, body = d.call("run_query", {"source": "pg", "query": "SELECT 1"})
    t.join()
    expect(s == 429 and code(body) == "rate_limit_exceeded", "%s %s" % (s, raw[:200]))
    expect(hdrs.get("Retry-After", "").isdigit(), hdrs)
    expect(results["slow"][0] in (200, 400), results["slow"][:3])


def main():
    args = parse_args()
    if not os.environ.get("CN_TEST_PG_DSN"):
        print("CN_TEST_PG_DSN is not set: start PostgreSQL with tests/support/pg.sh "
              "(scripts/test.sh does it)")
        print("0 passed, 1 failed")
        return 1
    mdir = tempfile.mkdtemp(prefix="cn-e2e-pg-")
    mappings = os.path.join(mdir, "pg.yaml")
    with open(mappings, "w") as f:
        f.write("mappings:\n"
                "  crm.customers: { description: \"Accounts of the shop's customers\" }\n"
                "  crm.customers.email: { hidden: true }\n")
    d = Daemon(args, config(args, mappings)).start()
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                r.run(name, fn, d)
    finally:
        d.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
