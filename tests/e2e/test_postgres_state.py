"""Two daemons sharing one PostgreSQL state store (state.backend: postgres), as two
replicas behind a load balancer: the same execution_id delivered to both at once runs
once (both answer the same bytes, the audit log in the shared database shows one run and
one replay); while the state database refuses connections, calls answer 503 with
Retry-After and /readyz says why, and both recover when it comes back. The database is
the test PostgreSQL of tests/support/pg.sh (a fresh database of this test's own)."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, count_for, count_query, expect, parse_args  # noqa: E402

DB = "cn_e2e_state_%d" % os.getpid()


def psql(sql, db=None):
    dsn = os.environ["CN_TEST_PG_SUPER_DSN"] + (" dbname=" + db if db else "")
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("psql %s: %s" % (sql, out.stderr))
    return out.stdout.strip()


def config(args):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ backend: postgres, dsn: "${{CN_STATE_DSN}}", pool: 4, path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    pool: {{ size: 8 }}
    limits: {{ max_rows: 10, max_result_bytes: 60000, timeout_ms: 8000 }}
"""


def test_one_run_per_id(a, b, n):
    query = count_query(n)
    ids = ["exec_twice_%d_%d" % (os.getpid(), i) for i in range(12)]
    answers = {}

    def deliver(d, exec_id, slot):
        # as Interactor does: a 429 (the other replica still runs it, or every connection
        # of the source is busy on a loaded machine) is retried after Retry-After
        deadline = time.monotonic() + 90
        while True:
            got = d.call("run_query", {"source": "demo", "query": query}, exec_id=exec_id)
            if got[0] != 429 or time.monotonic() > deadline:
                break
            time.sleep(min(float(got[1].get("Retry-After") or 1), 2.0))
        answers[(exec_id, slot)] = got

    threads = []
    for exec_id in ids:
        for slot, d in enumerate((a, b)):
            t = threading.Thread(target=deliver, args=(d, exec_id, slot))
            t.start()
            threads.append(t)
    for t in threads:
        t.join(120)
    for exec_id in ids:
        (s1, _, raw1, _), (s2, _, raw2, _) = answers[(exec_id, 0)], answers[(exec_id, 1)]
        expect(s1 == 200 and s2 == 200, "%s: %s %s / %s %s" % (exec_id, s1, raw1[:200], s2, raw2[:200]))
        # execution_time_ms is in the body: a second run would not give the same bytes
        expect(raw1 == raw2, "%s: different answers %s / %s" % (exec_id, raw1[:200], raw2[:200]))
    # the shared audit log: per id one call that ran and one replay
    a.stop()
    b.stop()
    rows = psql("SELECT execution_id, count(*) FILTER (WHERE code IS NULL), "
                "count(*) FILTER (WHERE code = 'replayed') FROM interactor_connector.audit "
                "WHERE execution_id LIKE 'exec_twice_%' GROUP BY 1", DB).splitlines()
    expect(len(rows) == len(ids), rows)
    for row in rows:
        expect(row.endswith("|1|1"), "one run and one replay expected: %s" % row)
    answered = psql("SELECT count(*) FROM interactor_connector.executions WHERE state = 1 "
                    "AND id LIKE 'exec_twice_%'", DB)
    expect(answered == str(len(ids)), answered)


def test_database_refuses(a, b):
    s, _, raw, _ = a.call("run_query", {"source": "demo", "query": "SELECT 1 AS one"})
    expect(s == 200, raw[:200])
    status, _, body = b.request("GET", "/readyz")
    expect(status == 200 and b'"state"' in body, body[:300])
    psql("ALTER DATABASE %s ALLOW_CONNECTIONS false" % DB)
    psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'" % DB)
    try:
        for d in (a, b):
            s, h, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 2 AS two"})
            expect(s == 503 and body["error"]["code"] == "store_unavailable", raw[:300])
            expect(h.get("Retry-After"), h)
            status, _, text = d.request("GET", "/readyz")
            expect(status == 503 and b"unreachable" in text, text[:400])
    finally:
        psql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % DB)
    for d in (a, b):
        s, _, raw, _ = d.call("run_query", {"source": "demo", "query": "SELECT 3 AS three"})
        expect(s == 200, raw[:300])
        status, _, text = d.request("GET", "/readyz")
        expect(status == 200, text[:400])
    password = os.environ["CN_TEST_PG_SUPER_DSN"].split("password=")[1].split()[0]
    for d in (a, b):
        expect(password not in d.log_text(), "the state database's password is in the log")


def main():
    args = parse_args()
    if "CN_TEST_PG_SUPER_DSN" not in os.environ:
        print("CN_TEST_PG_SUPER_DSN is not set: tests/support/pg.sh start DIR && . DIR/pg.env")
        return 1
    psql("CREATE DATABASE " + DB)
    env = {"CN_STATE_DSN": os.environ["CN_TEST_PG_SUPER_DSN"] + " dbname=" + DB}
    r = Runner()
    try:
        a = Daemon(args, config(args), env_extra=env).start()
        b = Daemon(args, config(args), env_extra=env).start()
        try:
            r.run("database_refuses", test_database_refuses, a, b)
            n = count_for(a, "demo", 0.4)
            r.run("one_run_per_id", test_one_run_per_id, a, b, n)
        finally:
            a.stop()
            b.stop()
    finally:
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
