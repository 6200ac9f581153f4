"""A reload keeps the connections of a PostgreSQL source whose entry did not change, seen
from the server: the same backend pids in pg_stat_activity before and after reloads that
change another source and that change the source's mappings file (whose new contents apply).
A reload that changes the source's entry opens a new pool, and the old backends go once the
requests that used them are done."""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402

APP = "cn_reload_e2e_%d" % os.getpid()


def config(args, mappings, pool=2, demo_rows=1000):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: pg
    driver: postgres
    dsn: "${{CN_TEST_PG_DSN}} application_name={APP}"
    mappings: "{mappings}"
    pool: {{ size: {pool} }}
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    limits: {{ max_rows: {demo_rows} }}
"""


def backends():
    """The connector's backends, as the server lists them."""
    out = subprocess.run(
        ["psql", os.environ["CN_TEST_PG_SUPER_DSN"], "-Atc",
         "SELECT pid FROM pg_stat_activity WHERE application_name = '%s' ORDER BY pid" % APP],
        check=True, capture_output=True, text=True, timeout=30).stdout
    return [int(x) for x in out.split()]


def busy(d, n=2):
    """n queries at once, so that the pool opens n connections."""
    out = []

    def one():
        out.append(d.call("run_query", {"source": "pg",
                                        "query": "SELECT count(*) FROM generate_series(1, 3000000)"}))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    expect(len(out) == n and all(r[0] == 200 for r in out), [r[2][:200] for r in out])


def write_mappings(path, description):
    with open(path + ".new", "w") as f:
        f.write("mappings:\n  crm.customers:\n    description: \"%s\"\n" % description)
    os.replace(path + ".new", path)


def reload(d, text):
    with open(d.config_path, "w") as f:
        f.write(text.replace("@WORKDIR@", d.workdir))
    p = subprocess.run([d.args.binary, "reload", "--config", d.config_path], env=d.env,
                       capture_output=True, text=True, timeout=90)
    expect(p.returncode == 0, p.stdout + p.stderr)
    return p.stdout


def describe(d):
    s, _, raw, body = d.call("describe_schema", {"source": "pg", "tables": ["crm.customers"]})
    expect(s == 200, raw[:300])
    return body["result"]["tables"][0].get("description")


def test_pool_kept(args, tmp):
    mappings = os.path.join(tmp, "pg.yaml")
    write_mappings(mappings, "first words")
    d = Daemon(args, config(args, mappings)).start()
    try:
        busy(d)
        before = backends()
        expect(len(before) >= 2, "backends: %s" % before)
        # another source changes: this one keeps its connections
        out = reload(d, config(args, mappings, demo_rows=5))
        expect("1 source(s) kept" in out and "1 opened" in out, out)
        busy(d)
        expect(backends() == before, "after reload 1: %s, was %s" % (backends(), before))
        # the mappings file changes: new mappings, same connections
        write_mappings(mappings, "second words")
        out = reload(d, config(args, mappings, demo_rows=5))
        expect("(1 with new mappings)" in out, out)
        expect(describe(d) == "second words", describe(d))
        busy(d)
        expect(backends() == before, "after reload 2: %s, was %s" % (backends(), before))
        # the entry changes: a new pool; the old one closes once its requests are done
        reload(d, config(args, mappings, pool=3, demo_rows=5))
        busy(d)
        deadline = time.time() + 10
        while time.time() < deadline and set(backends()) & set(before):
            time.sleep(0.1)
        after = backends()
        expect(not set(after) & set(before) and after, "old %s, now %s" % (before, after))
    finally:
        d.stop()
    deadline = time.time() + 10
    while time.time() < deadline and backends():
        time.sleep(0.1)
    expect(not backends(), "backends left after stop: %s" % backends())


def main():
    args = parse_args()
    r = Runner()
    with tempfile.TemporaryDirectory(prefix="cn-pg-reload-") as tmp:
        r.run("test_pool_kept", test_pool_kept, args, tmp)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
