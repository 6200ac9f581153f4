"""Schema refresh end to end, on a writable copy of the demo database that the
test changes underneath a running daemon: the `refresh` and `drift` commands
(through the daemon, and on the state file when no daemon runs), SIGUSR1,
the cron schedule, GET /readyz, list_data_sources, and search_schema and
describe_schema through signed callbacks."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, SECRET_OLD, Daemon, Runner, expect, parse_args  # noqa: E402

ARGS = None


def config(args):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db", snapshots: 5 }}
log: {{ level: info, format: json }}
refresh: "* * * * *"
refresh_jitter: 0
sources:
  - name: shop
    driver: sqlite
    dsn: "@WORKDIR@/shop.db"
    mappings: "{args.source_dir}/conf/mappings/demo.yaml"
  - name: fixed
    driver: sqlite
    dsn: "{args.demo_db}"
    refresh: "off"
"""


def cli(d, *argv, timeout=120):
    env = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
    p = subprocess.run([ARGS.binary, *argv], capture_output=True, env=env, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def alter(d, sql):
    db = sqlite3.connect(os.path.join(d.workdir, "shop.db"))
    db.executescript(sql)
    db.close()


def columns(d, source, table):
    s, _, raw, body = d.call("describe_schema", {"source": source, "tables": [table]})
    expect(s == 200, raw[:300])
    return [c["name"] for c in body["result"]["tables"][0]["columns"]]


def source_entry(d, name):
    s, _, raw, body = d.call("list_data_sources", {})
    expect(s == 200, raw[:300])
    return {x["name"]: x for x in body["result"]["sources"]}[name]


def readyz(d):
    s, _, raw = d.request("GET", "/readyz")
    return s, json.loads(raw)


def wait_for(what, fn, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.2)
    raise AssertionError("%s did not happen within %d s" % (what, seconds))


def main():
    global ARGS
    ARGS = parse_args()
    d = Daemon(ARGS, config(ARGS))
    shutil.copyfile(ARGS.demo_db, os.path.join(d.workdir, "shop.db"))
    cfg = d.config_path
    d.start()
    r = Runner()

    def readyz_and_pid_file():
        s, body = readyz(d)
        expect(s == 200 and body["status"] == "ready", body)
        shop = {x["name"]: x for x in body["sources"]}["shop"]
        expect(shop["status"] == "ready" and shop["tables"] == 5 and shop["drift"] == 0, shop)
        expect(shop["next_refresh_at"].endswith(":00Z"), shop)  # every minute, no jitter
        expect("next_refresh_at" not in {x["name"]: x for x in body["sources"]}["fixed"], body)
        with open(os.path.join(d.workdir, "state.db.pid")) as f:
            expect(int(f.read()) == d.proc.pid, "the pid file names another process")

    def search_schema_signed():
        s, _, raw, body = d.call("search_schema", {"query": "signup"})
        expect(s == 200, raw[:300])
        first = body["result"]["matches"][0]
        expect((first["table"], first.get("column")) == ("customers", "created_at"), first)
        expect(first["kind"] == "column" and "signup date" in first["synonyms"], first)
        s, _, raw, body = d.call("search_schema", {"query": "phone", "source": "shop"})
        expect(s == 200 and body["result"]["matches"] == [], raw[:300])  # hidden

    def refresh_command_through_daemon():
        alter(d, "ALTER TABLE orders ADD COLUMN coupon TEXT")
        rc, out, err = cli(d, "refresh", "--config", cfg, "shop")
        expect(rc == 0, out + err)
        expect("shop: refreshed in" in out and "1 change:" in out, out)
        expect("  column orders.coupon added (TEXT)" in out, out)
        expect("is new since the baseline and has no description" in out, out)
        expect("refresh of shop asked for by the command line" in d.log_text(), "the daemon did not do it")
        expect("coupon" in columns(d, "shop", "orders"), "describe_schema lacks the new column")
        shop = source_entry(d, "shop")
        expect(shop["drift"] == 1 and shop["schema_changed_at"], shop)
        rc, out, _ = cli(d, "refresh", "--config", cfg, "--json", "nosuch")
        expect(rc == 1, out)

    def drift_command_through_daemon():
        rc, out, err = cli(d, "drift", "--config", cfg, "shop")
        expect(rc == 3, "exit status %d: %s %s" % (rc, out, err))
        expect("shop: 1 drift item as of the refresh at" in out, out)
        expect("column orders.coupon (TEXT) is new since the baseline" in out, out)
        expect("    column orders.coupon added (TEXT)" in out, out)
        rc, out, _ = cli(d, "drift", "--config", cfg, "--json")
        reports = {x["source"]: x for x in json.loads(out)["reports"]}
        expect(reports["shop"]["drift"][0]["kind"] == "undescribed_column", reports)
        expect(reports["fixed"]["drift"] == [], reports)

    def sigusr1_refreshes():
        alter(d, "ALTER TABLE orders ADD COLUMN coupon2 TEXT")
        os.kill(d.proc.pid, signal.SIGUSR1)
        wait_for("SIGUSR1's refresh", lambda: "coupon2" in columns(d, "shop", "orders"), 10)
        expect("SIGUSR1: refreshing every source" in d.log_text(), "no log line")

    def cron_schedule_refreshes():
        alter(d, "ALTER TABLE orders ADD COLUMN coupon3 TEXT")
        _, body = readyz(d)
        nxt = {x["name"]: x for x in body["sources"]}["shop"]["next_refresh_at"]
        wait_for("the scheduled refresh at " + nxt, lambda: "coupon3" in columns(d, "shop", "orders"), 75)
        expect("coupon3" not in columns(d, "fixed", "orders"), "the other source changed")

    def failed_refresh_keeps_schema():
        db = os.path.join(d.workdir, "shop.db")
        os.rename(db, db + ".away")
        try:
            rc, out, _ = cli(d, "refresh", "--config", cfg, "shop")
            expect(rc == 1 and "shop: refresh FAILED:" in out and "shop.db" in out, out)
            s, body = readyz(d)
            shop = {x["name"]: x for x in body["sources"]}["shop"]
            expect(s == 503 and body["status"] == "not_ready", body)
            expect(shop["status"] == "refresh_failed" and "serving the schema read at" in shop["reason"], shop)
            expect(SECRET not in json.dumps(body), "a secret in /readyz")
            expect("coupon2" in columns(d, "shop", "orders"), "the old schema is gone")
            expect("shop.db" in source_entry(d, "shop")["refresh_error"], "no refresh_error")
        finally:
            os.rename(db + ".away", db)
        rc, out, _ = cli(d, "refresh", "--config", cfg)
        expect(rc == 0, out)
        s, body = readyz(d)
        expect(s == 200, body)

    def check_config_prints_drift():
        rc, out, err = cli(d, "check-config", "--quiet", "--config", cfg)
        expect(rc == 0, out + err)
        expect("note: new columns are compared with the first snapshot by the running daemon" in out, out)

    for name, fn in [("readyz_and_pid_file", readyz_and_pid_file), ("search_schema_signed", search_schema_signed),
                     ("refresh_command_through_daemon", refresh_command_through_daemon),
                     ("drift_command_through_daemon", drift_command_through_daemon),
                     ("sigusr1_refreshes", sigusr1_refreshes),
                     ("failed_refresh_keeps_schema", failed_refresh_keeps_schema),
                     ("check_config_prints_drift", check_config_prints_drift),
                     ("cron_schedule_refreshes", cron_schedule_refreshes)]:
        r.run(name, fn)
    rc = d.stop()
    r.run("clean_exit", lambda: expect(rc == 0 and not os.path.exists(os.path.join(d.workdir, "state.db.pid")),
                                       "exit status %s, pid file left" % rc))

    def commands_without_daemon():
        alter(d, "ALTER TABLE orders DROP COLUMN coupon")
        rc, out, err = cli(d, "refresh", "--config", cfg, "shop")
        expect(rc == 0 and "  column orders.coupon removed (was TEXT)" in out, out + err)
        rc, out, err = cli(d, "drift", "--config", cfg, "shop")
        expect(rc == 3 and "coupon2 (TEXT) is new since the baseline" in out, out + err)
        expect("coupon (TEXT)" not in out.split("last changes")[0], out)
        rc, out, err = cli(d, "check-config", "--quiet", "--config", cfg)
        expect(rc == 0 and "  drift: column orders.coupon2 (TEXT) is new since the baseline" in out, out + err)

    r.run("commands_without_daemon", commands_without_daemon)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
