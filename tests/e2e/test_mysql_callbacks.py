"""End to end on MariaDB: the daemon with a mysql source (the SELECT-only user of
tests/support/mariadb.sh), signed callbacks over HTTP: the schema, types and masking,
the guard and the read-only statement, a full pool, a stopped server and its return."""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, Daemon, Runner, expect, parse_args  # noqa: E402

SLOW = "SELECT count(*) FROM orders a, orders b, orders c, order_items d WHERE a.id + d.qty > b.id"


def config(mappings):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: shop
    driver: mysql
    dsn: "${{CN_TEST_MYSQL_DSN}}"
    description: "The web shop's MariaDB"
    mappings: "{mappings}"
    pool: {{ size: 1 }}
    limits: {{ max_rows: 100, max_result_bytes: 60000, timeout_ms: 4000 }}
"""


def code(parsed):
    return parsed and parsed.get("error", {}).get("code")


def test_list_and_describe(d):
    s, _, raw, body = d.call("list_data_sources", {})
    expect(s == 200, raw[:300])
    src = body["result"]["sources"][0]
    expect(src["type"] == "mysql" and src["status"] == "available", src)
    expect(src["table_count"] == 8, src)  # secrets is hidden
    s, _, raw, body = d.call("describe_schema", {"source": "shop", "tables": ["customers", "orders"]})
    expect(s == 200, raw[:300])
    tables = {t["name"]: t for t in body["result"]["tables"]}
    c = tables["customers"]
    expect(c["schema"] == "connector_test", c)
    expect("phone" not in [col["name"] for col in c["columns"]], "hidden column listed")
    expect(c["description"] == "Accounts of the shop's customers", c.get("description"))
    email = [col for col in c["columns"] if col["name"] == "email"][0]
    expect(email["description"] == "Login email address", email)
    o = tables["orders"]
    expect(o["foreign_keys"][0]["references"]["table"] == "customers", o["foreign_keys"])
    s, _, raw, body = d.call("describe_schema", {"source": "shop", "tables": ["secrets"]})
    expect(s == 400 and code(body) == "unknown_table", raw[:200])


def test_query_types_and_masking(d):
    s, _, raw, body = d.call("run_query", {
        "source": "shop",
        "query": "SELECT * FROM customers WHERE id <= $1 ORDER BY id",
        "parameters": [2]})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["columns"] == ["id", "email", "name", "country", "created_at"], r["columns"])
    expect(r["column_types"][0] == "int unsigned", r["column_types"])
    expect(r["row_count"] == 2 and r["rows"][1][0] == 2, r)
    expect(r["rows"][0][4] == "2024-02-02T10:01:00", r["rows"][0])
    for sql in ("SELECT phone AS contact FROM customers",
                "SELECT id FROM customers WHERE phone LIKE '+49%'",
                "SELECT * FROM customers UNION ALL SELECT * FROM customers"):
        s, _, raw, body = d.call("run_query", {"source": "shop", "query": sql})
        expect(s == 400 and code(body) == "query_rejected", "%s -> %s %s" % (sql, s, raw[:200]))
    s, _, raw, body = d.call("run_query", {
        "source": "shop",
        "query": "SELECT t_ubigint, t_decimal, t_json, t_blob, t_timestamp FROM type_zoo WHERE id = 1"})
    expect(s == 200, raw[:300])
    text = raw.decode()
    expect("18446744073709551615" in text and "12345678901234567890.0123456789" in text, text)
    row = body["result"]["rows"][0]
    expect(row[2] == {"a": [1, 2.5, "x"], "b": None, "c": {"d": True}}, row[2])
    expect(row[3] == "AP8Q" and row[4] == "2024-02-29T13:45:59.125Z", row)


def test_row_cap(d):
    s, _, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT id FROM orders",
                                           "max_rows": 7})
    expect(s == 200, raw[:300])
    r = body["result"]
    expect(r["row_count"] == 7 and r["truncated"] is True, r)


def test_guard_and_read_only(d):
    for sql in ("DELETE FROM audit_log", "SELECT SLEEP(5)", "SELECT 1 INTO OUTFILE '/tmp/x'",
                "SELECT /*!50000 1 */", "WITH x AS (SELECT 1) DELETE FROM audit_log",
                "SELECT * FROM secrets", "SELECT * FROM mysql.user"):
        s, _, raw, body = d.call("run_query", {"source": "shop", "query": sql})
        expect(s == 400 and code(body) == "query_rejected", "%s -> %s %s" % (sql, s, raw[:200]))
    # a stored function the guard cannot see into meets the read-only statement
    s, _, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT write_log('e2e')"})
    expect(s == 400 and code(body) == "query_rejected" and "READ ONLY" in raw.decode(), raw[:300])


def test_timeout(d):
    t0 = time.time()
    s, _, raw, body = d.call("run_query", {"source": "shop", "query": SLOW})
    expect(s == 400 and code(body) == "query_timeout", "%s %s" % (s, raw[:200]))
    expect(time.time() - t0 < 8, "took %.1f s" % (time.time() - t0))


def test_pool_full_is_429(d):
    results = {}

    def slow():
        results["slow"] = d.call("run_query", {"source": "shop", "query": SLOW})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    s, hdrs, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT 1"})
    t.join()
    expect(s == 429 and code(body) == "rate_limit_exceeded", "%s %s" % (s, raw[:200]))
    expect(hdrs.get("Retry-After", "").isdigit(), hdrs)
    expect(results["slow"][0] == 400, results["slow"][:3])


def admin_sql(sql):
    subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", os.environ["CN_TEST_MYSQL_PORT"],
                    "-u", "connector_admin", "-p" + os.environ["CN_TEST_MYSQL_ADMIN_PASSWORD"],
                    "connector_test", "-e", sql], check=True)


def refresh(d):
    env = dict(os.environ, E2E_SECRET=SECRET)
    p = subprocess.run([d.args.binary, "refresh", "--config", d.config_path, "shop"],
                       capture_output=True, env=env, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def test_refresh_sees_a_new_column(d):
    admin_sql("ALTER TABLE audit_log ADD COLUMN note VARCHAR(20) NULL")
    try:
        rc, out = refresh(d)
        expect(rc == 0 and "connector_test.audit_log.note added (varchar(20))" in out, out)
        s, _, raw, body = d.call("describe_schema", {"source": "shop", "tables": ["audit_log"]})
        expect(s == 200 and "note" in [c["name"] for c in body["result"]["tables"][0]["columns"]],
               raw[:300])
        s, _, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT note FROM audit_log"})
        expect(s == 200 and body["result"]["rows"] == [[None]], raw[:300])
    finally:
        admin_sql("ALTER TABLE audit_log DROP COLUMN note")
    rc, out = refresh(d)
    expect(rc == 0 and "connector_test.audit_log.note removed" in out, out)


def test_server_down_then_back(d):
    support = os.environ["CN_TEST_MYSQL_SUPPORT"]
    env_dir = os.environ["CN_TEST_MYSQL_DIR"]
    subprocess.run([support, "pause", env_dir], check=True, stdout=subprocess.DEVNULL)
    try:
        s, hdrs, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT 1"})
        expect(s == 503 and code(body) == "data_source_disconnected", "%s %s" % (s, raw[:200]))
        expect(os.environ["CN_TEST_MYSQL_RO_PASSWORD"] not in raw.decode(), "password in answer")
    finally:
        subprocess.run([support, "resume", env_dir], check=True, stdout=subprocess.DEVNULL)
    s, _, raw, body = d.call("run_query", {"source": "shop", "query": "SELECT COUNT(*) AS n FROM orders"})
    expect(s == 200 and body["result"]["rows"] == [[200]], raw[:300])
    expect(os.environ["CN_TEST_MYSQL_RO_PASSWORD"] not in d.log_text(), "password in the log")


def main():
    args = parse_args()
    if not os.environ.get("CN_TEST_MYSQL_DSN"):
        print("CN_TEST_MYSQL_DSN is not set: start MariaDB with tests/support/mariadb.sh "
              "(scripts/test.sh does it)")
        print("0 passed, 1 failed")
        return 1
    mdir = tempfile.mkdtemp(prefix="cn-e2e-my-")
    mappings = os.path.join(mdir, "shop.yaml")
    with open(mappings, "w") as f:
        f.write("mappings:\n"
                "  customers: { description: \"Accounts of the shop's customers\" }\n"
                "  customers.phone: { hidden: true }\n"
                "  secrets: { hidden: true }\n")
    d = Daemon(args, config(mappings)).start()
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
