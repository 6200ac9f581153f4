"""Secret rotation with two daemons sharing one PostgreSQL state store (state.backend:
postgres), against the fake Interactor platform: rotate-secret keeps the new secret in the
store and gives it to the platform only once BOTH replicas accept it; while a live replica
has not loaded it, rotate-secret stops before the platform hears of it, saying how many
replicas have not confirmed; in the window both daemons accept the old and the new secret;
--finish makes both refuse the old one; no secret appears in a log or a message. The
database is the test PostgreSQL of tests/support/pg.sh (a fresh database of its own)."""

import calendar
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from fakeplatform import FakePlatform, connector_config, run_cli  # noqa: E402
from harness import SECRET, SECRET_OLD, Daemon, Runner, expect, parse_args  # noqa: E402

DB = "cn_e2e_secrets_%d" % os.getpid()
ARGS = None
FAKE = None
ENV = {}
LOGS = []


def psql(sql, db=None):
    dsn = os.environ["CN_TEST_PG_SUPER_DSN"] + (" dbname=" + db if db else "")
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("psql %s: %s" % (sql, out.stderr))
    return out.stdout.strip()


def daemon(register):
    config = connector_config(ARGS, "@WORKDIR@", FAKE, public_url="http://127.0.0.1:@PORT@",
                              interactor_extra="register_on_start: true" if register else "")
    config = config.replace('state: { path: "@WORKDIR@/state.db" }',
                            'state: { backend: postgres, dsn: "${CN_STATE_DSN}", pool: 4, '
                            'path: "@WORKDIR@/state.db" }')
    expect("backend: postgres" in config, "the state line of connector_config changed")
    return Daemon(ARGS, config, env_extra=dict(ENV, FAKE_CLIENT_SECRET=FAKE.client_secret)).start()


def cli(d, *argv):
    rc, out, err, _ = run_cli(ARGS, *argv, "--config", d.config_path,
                              env=dict(ENV, FAKE_CLIENT_SECRET=FAKE.client_secret))
    LOGS.append(out + err)
    return rc, out, err


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def stored():
    text = psql("SELECT doc FROM interactor_connector.secrets WHERE id = 1", DB)
    return json.loads(text) if text else {"secrets": []}


def accepted(d, secret):
    return d.call("db_list_data_sources", {}, secret=secret)[0] == 200


def test_a_replica_that_does_not_confirm_stops_the_rotation(a, b):
    # a third replica that beats (a fresh seen_at) but never loads anything new
    psql("INSERT INTO interactor_connector.replicas VALUES (7, 0, extract(epoch FROM now())::bigint)", DB)
    stop = threading.Event()

    def beat():
        while not stop.wait(1):
            psql("UPDATE interactor_connector.replicas SET seen_at = extract(epoch FROM now())::bigint "
                 "WHERE id = 7", DB)
    t = threading.Thread(target=beat)
    t.start()
    since = len(FAKE.log())
    try:
        rc, out, err = cli(a, "rotate-secret")
    finally:
        stop.set()
        t.join()
        psql("DELETE FROM interactor_connector.replicas WHERE id = 7", DB)
    expect(rc == 1 and "1 of the 3 running replicas have not loaded" in err and
           "nothing was changed on the platform" in err and "dropped" in err, out + err)
    expect(FAKE.writes(since) == [], "the platform was asked: %s" % FAKE.writes(since))
    expect(stored()["secrets"] == [], "the new secret stayed in the store: %s" % len(stored()["secrets"]))
    for d in (a, b):
        expect(accepted(d, SECRET), "the configured secret is refused")


def test_rotation_reaches_both_before_the_platform(a, b):
    since = len(FAKE.log())
    started = time.time()
    rc, out, err = cli(b, "rotate-secret")  # from the replica that did not register: the store is shared
    expect(rc == 0 and "every running replica accepts the new secret" in out, out + err)
    expect("5 tools (5 now) have the new secret" in out and "kept in the state store" in out, out)
    new = next(s["secret"] for s in stored()["secrets"] if s["state"] == "active")
    expect(new not in (SECRET, SECRET_OLD) and len(new) == 64, "new secret")
    # the platform was patched only after both daemons had loaded the secret
    patches = [e for e in FAKE.writes(since) if e["method"] == "PATCH"]
    expect(len(patches) == 5, patches)
    first_patch = min(e["time"] for e in patches)
    for d in (a, b):
        loads = [calendar.timegm(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(rec["ts"][19:-1])
                 for rec in (json.loads(line) for line in d.log_text().splitlines()
                             if "loaded from the state store" in line)]
        expect(any(started - 0.01 <= t <= first_patch for t in loads),
               "the daemon on %d loaded no new secrets between the start of rotate-secret (%.3f) and the "
               "platform's first PATCH (%.3f): %s" % (d.port, started, first_patch, loads))
    for d in (a, b):
        expect(accepted(d, new), "the new secret is refused by the daemon on %d" % d.port)
        expect(accepted(d, SECRET), "the old secret is refused in the window on %d" % d.port)
    results = FAKE.invoke("db_list_data_sources", {}, sign_with="active")
    expect(all(r["status"] == 200 for r in results), results)
    # ending the window: both refuse the old secret
    rc, out, err = cli(a, "rotate-secret", "--finish")
    expect(rc == 0 and "removed from 5 tools" in out and "every running replica has loaded" in out, out + err)
    for d in (a, b):
        status, _, _, body = d.call("db_list_data_sources", {}, secret=SECRET)
        expect(status == 401 and body["error"]["code"] == "invalid_signature", (d.port, status, body))
        expect(accepted(d, new), "the new secret is refused after --finish on %d" % d.port)
    # a replica that starts now reads the store, not a file
    c = daemon(register=False)
    try:
        expect(accepted(c, new) and not accepted(c, SECRET), "a new replica does not use the store")
        expect(not os.path.exists(os.path.join(c.workdir, "state.db.secrets")), "a rotation file appeared")
    finally:
        c.stop()
        LOGS.append(c.log_text())


def test_replica_rows(a, b):
    rows = psql("SELECT count(*), min(secrets_version) = max(secrets_version) FROM "
                "interactor_connector.replicas", DB)
    expect(rows == "2|t", rows)


def test_rotation_file_moves_into_the_store():
    """Moving from the SQLite store: the first replica copies its rotation file into an empty store."""
    db2 = DB + "_move"
    psql("CREATE DATABASE " + db2)
    saved = ENV["CN_STATE_DSN"]
    ENV["CN_STATE_DSN"] = os.environ["CN_TEST_PG_SUPER_DSN"] + " dbname=" + db2
    rotated = "ab" * 32
    c = d = None
    try:
        config = connector_config(ARGS, "@WORKDIR@", FAKE).replace(
            'state: { path: "@WORKDIR@/state.db" }',
            'state: { backend: postgres, dsn: "${CN_STATE_DSN}", path: "@WORKDIR@/state.db" }')
        c = Daemon(ARGS, config, env_extra=dict(ENV, FAKE_CLIENT_SECRET=FAKE.client_secret))
        path = os.path.join(c.workdir, "state.db.secrets")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, json.dumps({"version": 1, "secrets": [
            {"secret": rotated, "state": "active", "created_at": "2026-01-01T00:00:00Z",
             "expires_at": None}], "retired": [], "patched_tools": []}).encode())
        os.close(fd)
        c.start()
        expect(accepted(c, rotated), "the rotation file's secret is refused")
        expect("copied into the shared state store" in c.log_text(), c.log_text()[-2000:])
        d = daemon(register=False)  # no file of its own: it reads the store
        expect(accepted(d, rotated), "a replica without the file refuses the moved secret")
    finally:
        for x in (c, d):
            if x:
                x.stop()
                LOGS.append(x.log_text())
        ENV["CN_STATE_DSN"] = saved
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db2)


def test_no_secret_in_logs(a, b):
    doc = stored()
    leaks = [FAKE.client_secret, SECRET, SECRET_OLD] + [s["secret"] for s in doc["secrets"]]
    for text in LOGS + [a.log_text(), b.log_text()]:
        for s in leaks:
            expect(s not in text, "a secret was logged: ...%s..." % s[:6])


def main():
    global ARGS, FAKE
    ARGS = parse_args()
    if "CN_TEST_PG_SUPER_DSN" not in os.environ:
        print("CN_TEST_PG_SUPER_DSN is not set: tests/support/pg.sh start DIR && . DIR/pg.env")
        return 1
    psql("CREATE DATABASE " + DB)
    ENV["CN_STATE_DSN"] = os.environ["CN_TEST_PG_SUPER_DSN"] + " dbname=" + DB
    FAKE = FakePlatform(ARGS.source_dir)
    r = Runner()
    try:
        FAKE.reset()
        FAKE.data_source("ds_demo")
        a = daemon(register=True)
        b = daemon(register=False)
        try:
            wait_for("the tools", lambda: len(FAKE.tools()) == 5)
            wait_for("both replicas", lambda: psql("SELECT count(*) FROM interactor_connector.replicas",
                                                   DB) == "2")
            r.run("a_replica_that_does_not_confirm_stops_the_rotation",
                  test_a_replica_that_does_not_confirm_stops_the_rotation, a, b)
            r.run("rotation_reaches_both_before_the_platform",
                  test_rotation_reaches_both_before_the_platform, a, b)
            r.run("replica_rows", test_replica_rows, a, b)
            r.run("rotation_file_moves_into_the_store", test_rotation_file_moves_into_the_store)
            r.run("no_secret_in_logs", test_no_secret_in_logs, a, b)
        finally:
            codes = []
            for d in (a, b):
                codes.append(d.stop())
                LOGS.append(d.log_text())
        r.run("clean_exit", lambda: expect(codes == [0, 0], "exit codes %s:\n%s" % (
            codes, "".join(d.log_text()[-2000:] for d in (a, b)))))
        left = psql("SELECT count(*) FROM interactor_connector.replicas", DB)
        r.run("rows_gone_at_shutdown", lambda: expect(left == "0", "replica rows left: " + left))
    finally:
        FAKE.stop()
        psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
