"""GET /readyz pings every source (at most every 2 s): a database that stops answering
between two refreshes makes it 503 with the source `unreachable` and the driver's reason,
while /healthz (liveness) stays 200; once the database is back, /readyz is 200 again."""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402


def config(db):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
refresh: "off"
sources:
  - name: shop
    driver: sqlite
    dsn: "{db}"
"""


def ready(d):
    s, _, raw = d.request("GET", "/readyz")
    return s, json.loads(raw)


def wait_status(d, want, timeout=10):
    deadline = time.time() + timeout
    while True:
        s, body = ready(d)
        if s == want or time.time() > deadline:
            return s, body
        time.sleep(0.2)


def test_unreachable(args, tmp):
    db = os.path.join(tmp, "shop.db")
    shutil.copy(args.demo_db, db)
    d = Daemon(args, config(db)).start()
    try:
        s, body = ready(d)
        expect(s == 200 and body["sources"][0]["status"] == "ready", body)
        os.rename(db, db + ".away")
        s, body = wait_status(d, 503)
        shop = body["sources"][0]
        expect(s == 503 and shop["status"] == "unreachable" and "shop.db" in shop["reason"], body)
        s, _, raw = d.request("GET", "/healthz")
        expect(s == 200, "healthz: %d %s" % (s, raw[:200]))
        os.rename(db + ".away", db)
        s, body = wait_status(d, 200)
        expect(s == 200 and body["sources"][0]["status"] == "ready", body)
    finally:
        d.stop()


def main():
    args = parse_args()
    r = Runner()
    with tempfile.TemporaryDirectory(prefix="cn-readyz-") as tmp:
        r.run("test_unreachable", test_unreachable, args, tmp)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
