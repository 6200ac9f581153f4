"""Every line the daemon logs is JSON, also while PostgreSQL restarts under it.

libpq prints a notice (WARNING, DETAIL, HINT lines) that arrives while a connection is being
made on stderr, which is the daemon's log, unless a notice receiver is in place from the start.
The server sends such notices during the session start-up when it cannot apply a role's setting,
and to every backend when one crashes ("terminating connection because of crash of another server
process" with a DETAIL and a HINT). This test makes both happen under a daemon that is answering
callbacks:

- a role whose default_text_search_config names a configuration that was dropped since: each
  new session of that role gets a WARNING before it is ready;
- a fast restart of the server (tests/support/pg.sh restart) under load;
- a crash restart: a backend of the daemon is killed with SIGKILL, the postmaster makes every
  other backend quit with that WARNING and starts again (skipped when this user cannot signal
  the server's processes).

Then every line of the log must parse as a JSON object, and both sources must answer again.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, parse_args  # noqa: E402

ROLE = "cn_log_probe"


def psql(sql, dsn=None):
    p = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d",
                        dsn or os.environ["CN_TEST_PG_SUPER_DSN"], "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("psql failed: %s" % p.stderr.strip())
    return p.stdout.strip()


def wait_server(timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if psql("SELECT 1") == "1":
                return
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back within %d s" % timeout)


def make_probe_role(password):
    """A role each new session of which gets a WARNING while it starts."""
    psql(f"DROP ROLE IF EXISTS {ROLE}")
    psql("DROP TEXT SEARCH CONFIGURATION IF EXISTS public.cn_log_probe_cfg")
    psql("CREATE TEXT SEARCH CONFIGURATION public.cn_log_probe_cfg (COPY = simple)")
    psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
    psql(f"ALTER ROLE {ROLE} SET default_transaction_read_only = on")
    psql(f"ALTER ROLE {ROLE} SET default_text_search_config = 'public.cn_log_probe_cfg'")
    psql("DROP TEXT SEARCH CONFIGURATION public.cn_log_probe_cfg")


def drop_probe_role():
    try:
        wait_server(30)
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ROLE}'")
        psql(f"DROP ROLE IF EXISTS {ROLE}")
    except AssertionError as e:
        print("note: could not drop role %s: %s" % (ROLE, e))


def config(password_env):
    port = os.environ["CN_TEST_PG_PORT"]
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: debug, format: json }}
sources:
  - name: pg
    driver: postgres
    dsn: "${{CN_TEST_PG_DSN}}"
    pool: {{ size: 2 }}
    limits: {{ timeout_ms: 5000 }}
  - name: noisy
    driver: postgres
    dsn: "host=127.0.0.1 port={port} dbname=connector_test user={ROLE} password=${{{password_env}}}"
    pool: {{ size: 2 }}
    limits: {{ timeout_ms: 5000 }}
"""


class Load(threading.Thread):
    """Callbacks on both sources, back to back, until stopped; counts statuses."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop_flag = threading.Event()
        self.statuses = {}

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            src = "noisy" if n % 2 else "pg"
            try:
                s, _, _, _ = self.d.call("run_query", {"source": src, "query": "SELECT $1::int AS n",
                                                       "parameters": [n]})
            except OSError:
                s = -1
            self.statuses[s] = self.statuses.get(s, 0) + 1
            time.sleep(0.01)


def answers(d, src):
    s, _, raw, body = d.call("run_query", {"source": src, "query": "SELECT 41 + $1 AS n",
                                           "parameters": [1]})
    return s, raw, body


def wait_answers(d, src, timeout=30):
    deadline = time.time() + timeout
    while True:
        s, raw, body = answers(d, src)
        if s == 200:
            expect(body["result"]["rows"] == [[42]], raw[:200])
            return
        if time.time() > deadline:
            raise AssertionError("%s: no 200 within %d s after the restart: %s %s"
                                 % (src, timeout, s, raw[:200]))
        time.sleep(0.2)


def log_lines(d):
    return len(d.log_text().splitlines())


def check_log(d, since):
    """Every log line from line `since` on is a JSON object; returns how many there are."""
    lines = d.log_text().splitlines()[since:]
    bad = []
    for i, line in enumerate(lines, since):
        try:
            ok = isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            bad.append("%d: %s" % (i + 1, line[:160]))
    expect(lines, "nothing was logged")
    expect(not bad, "%d of %d log lines are not JSON objects:\n  %s"
           % (len(bad), len(lines), "\n  ".join(bad[:10])))
    return len(lines)


def test_session_warning(d):
    # each request may open a session (the pool is cold): the WARNING arrives while it starts
    wait_answers(d, "noisy")
    wait_answers(d, "pg")
    check_log(d, 0)  # from the start: also what the daemon logged while it opened the sources


def test_fast_restart_under_load(d):
    since = log_lines(d)
    load = Load(d)
    load.start()
    try:
        time.sleep(0.5)
        subprocess.run([os.path.join(d.args.source_dir, "tests/support/pg.sh"), "restart",
                        os.environ["CN_TEST_PG_DIR"]], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
        time.sleep(0.5)
    finally:
        load.stop_flag.set()
        load.join(30)
    expect(load.statuses.get(200, 0) > 0, load.statuses)
    wait_answers(d, "noisy")
    wait_answers(d, "pg")
    check_log(d, since)


def test_crash_restart_under_load(d):
    since = log_lines(d)
    pids = psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'interactor-connector'")
    pids = [int(p) for p in pids.split()]
    expect(pids, "no backend of the daemon in pg_stat_activity")
    load = Load(d)
    load.start()
    try:
        time.sleep(0.3)
        try:
            os.kill(pids[0], signal.SIGKILL)
        except PermissionError:
            print("note: cannot signal PostgreSQL's backends as this user; crash restart skipped")
            return
        # the postmaster makes every backend quit, then recovers; keep the load on meanwhile
        time.sleep(1.0)
        wait_server()
        time.sleep(0.5)
    finally:
        load.stop_flag.set()
        load.join(30)
    wait_answers(d, "noisy")
    wait_answers(d, "pg")
    n = check_log(d, since)
    print("log: %d lines, all JSON; load statuses %s" % (n, load.statuses))


def main():
    args = parse_args()
    if not os.environ.get("CN_TEST_PG_DSN"):
        print("CN_TEST_PG_DSN is not set: start PostgreSQL with tests/support/pg.sh "
              "(scripts/test.sh does it)")
        print("0 passed, 1 failed")
        return 1
    password = secrets.token_hex(12)
    make_probe_role(password)
    d = None
    r = Runner()
    try:
        d = Daemon(args, config("E2E_PROBE_PASSWORD"), {"E2E_PROBE_PASSWORD": password}).start()
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                r.run(name, fn, d)
    finally:
        if d:
            rc = d.stop()
            if rc != 0:
                print("FAIL daemon exit status %s" % rc)
                r.failed += 1
        drop_probe_role()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
