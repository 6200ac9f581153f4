"""A source whose database is missing at start-up: the daemon starts, says the
source is unavailable (at once, without retrying on every call), and serves it
once the database is there and the retry interval has passed."""

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402

RETRY_S = 5  # SOURCE_RETRY_MS in src/source.h


def main():
    args = parse_args()
    d = Daemon(args, """
auth: { callback_secrets: ["${E2E_SECRET}"] }
state: { path: "@WORKDIR@/state.db" }
sources:
  - { name: late, driver: sqlite, dsn: "@WORKDIR@/late.db" }
  - { name: demo, driver: sqlite, dsn: "%s" }
""" % args.demo_db)
    late_db = os.path.join(d.workdir, "late.db")
    d.start()
    r = Runner()

    def unavailable_then_recovers():
        s, _, raw, body = d.call("run_query", {"source": "late", "query": "SELECT 1"})
        expect(s == 503 and body["error"]["code"] == "data_source_disconnected", raw[:300])
        expect("late.db" in body["error"]["message"], "the message does not say what is missing")
        s, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 1 AS one"})
        expect(s == 200, "a dead source must not take the others down: %s" % raw[:200])
        shutil.copyfile(args.demo_db, late_db)
        t0 = time.time()
        s, _, raw, _ = d.call("run_query", {"source": "late", "query": "SELECT 1"})
        expect(s == 503 and time.time() - t0 < 1, "retried before the interval: %s" % raw[:200])
        time.sleep(RETRY_S + 0.5)
        s, _, raw, body = d.call("run_query", {"source": "late", "query": "SELECT count(*) FROM customers"})
        expect(s == 200 and body["result"]["rows"][0][0] > 0, raw[:300])
        s, _, raw, body = d.call("list_data_sources", {})
        states = {x["name"]: x["status"] for x in body["result"]["sources"]}
        expect(states == {"late": "available", "demo": "available"}, states)

    try:
        r.run("unavailable_then_recovers", unavailable_then_recovers)
    finally:
        rc = d.stop()
    r.run("clean_exit", lambda: expect(rc == 0, "exit status %s" % rc))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
