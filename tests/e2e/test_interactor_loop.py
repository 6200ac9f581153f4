"""The whole loop with the fake Interactor platform: the daemon registers its
tools and pushes its mappings when it starts, the platform calls every
callback_url signed with the secret it was given, exactly as Interactor does;
a secret rotation under load fails no callback; an interrupted rotation carries
on; a daemon that does not confirm the new secret stops the rotation before the
platform hears of it; a refresh that changes the mappings pushes them."""

import json
import os
import shutil
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from fakeplatform import (FakePlatform, cleanup, connector_config, parse_path, run_cli,  # noqa: E402
                          tmpdir, write)
from harness import SECRET, SECRET_OLD, Daemon, Runner, expect, parse_args  # noqa: E402

ARGS = None
FAKE = None
LOGS = []  # daemon logs and command outputs: no secret may appear in them

PARAMS = {
    "db_list_data_sources": {},
    "db_describe_schema": {"source": "demo", "tables": ["orders"]},
    "db_search_schema": {"query": "signup date", "limit": 3},
    "db_run_query": {"source": "demo", "query": "SELECT count(*) AS n FROM orders WHERE status = $1",
                     "parameters": ["paid"]},
    "db_orders_by_status": {"status": "paid", "limit": 2},
}


def cli(*argv):
    rc, out, err, _ = run_cli(ARGS, *argv, env={"FAKE_CLIENT_SECRET": FAKE.client_secret})
    LOGS.append(out + err)
    return rc, out, err


def daemon(interactor_extra="register_on_start: true", **kw):
    config = connector_config(ARGS, "@WORKDIR@", FAKE, public_url="http://127.0.0.1:@PORT@",
                              interactor_extra=interactor_extra, **kw)
    return Daemon(ARGS, config, env_extra={"FAKE_CLIENT_SECRET": FAKE.client_secret}).start()


def stop(d):
    code = d.stop()
    LOGS.append(d.log_text())
    expect(code == 0, "the daemon exited with %s (sanitizer report?):\n%s" % (code, d.log_text()[-3000:]))


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def fresh():
    FAKE.reset()
    FAKE.data_source("ds_demo")


def registered():
    """Wait until the daemon's start-up sync is over: the tools registered and the mappings pushed."""
    wait_for("the tools", lambda: len(FAKE.tools()) == 5)
    wait_for("the mappings", lambda: FAKE.state()["data_sources"]["ds_demo"]["pushes"] >= 1)


def active_secret(d):
    with open(os.path.join(d.workdir, "state.db.secrets")) as f:
        return next(s["secret"] for s in json.load(f)["secrets"] if s["state"] == "active")


def test_whole_loop():
    fresh()
    d = daemon()
    try:
        registered()
        tools = FAKE.tools()
        expect(tools["db_run_query"]["callback_url"] == "http://127.0.0.1:%d/v1/tools/db_run_query" % d.port,
               tools["db_run_query"])
        results = {r["tool"]: r for r in FAKE.invoke(by_tool=PARAMS)}
        expect(set(results) == set(PARAMS), results.keys())
        for name, r in results.items():
            expect(r["status"] == 200 and "result" in r["body"], "%s: %s" % (name, r))
        curated = results["db_orders_by_status"]["body"]["result"]
        expect(curated["row_count"] == 2 and all(row[1] == "paid" for row in curated["rows"]), curated)
        expect("phone" not in curated["columns"], "a hidden column reached the answer: %s" % curated)
        expect(results["db_run_query"]["body"]["result"]["rows"][0][0] > 0, results["db_run_query"])
        bad = FAKE.invoke("db_orders_by_status", {"status": "lost"})[0]
        expect(bad["status"] == 400 and bad["body"]["error"]["code"] == "invalid_parameters", bad)
        # a replay of the platform's call (same execution_id) gets the same answer from the store
        again = d.call("db_orders_by_status", {"status": "paid", "limit": 2},
                       exec_id=results["db_orders_by_status"]["execution_id"])
        expect(again[0] == 200 and again[3] == results["db_orders_by_status"]["body"], again[:2])
        expect('"tool":"db_orders_by_status"' in d.log_text(), "the request log lacks the curated tool")
    finally:
        stop(d)


def test_rotation_under_load():
    fresh()
    d = daemon()
    try:
        registered()
        FAKE.load_start("db_list_data_sources", threads=2, interval_ms=20)
        time.sleep(0.7)
        rc, out, err = cli("rotate-secret", "--config", d.config_path)
        expect(rc == 0 and "the running daemon accepts the new secret" in out, out + err)
        expect("5 tools (5 now) have the new secret" in out, out)
        time.sleep(1.5)  # the platform signs with either secret meanwhile
        load = FAKE.load_stop()
        expect(load["count"] > 50, "too little load: %s" % load["count"])
        expect(load["failures"] == [] and list(load["statuses"]) == ["200"],
               "callbacks failed during the rotation: %s" % json.dumps(load)[:2000])
        expect(load["by_secret"].get("deprecated", 0) > 0 and load["by_secret"].get("active", 0) > 0,
               "both secrets should have signed: %s" % load["by_secret"])
        new = active_secret(d)
        expect(new not in (SECRET, SECRET_OLD) and len(new) == 64, "new secret")
        for t in FAKE.tools().values():
            states = sorted(s["state"] for s in t["secrets"])
            expect(states == ["active", "deprecated"], "%s: %s" % (t["name"], states))
            expect(next(s["secret"] for s in t["secrets"] if s["state"] == "active") == new, t["name"])
        # in the window both are accepted
        expect(d.call("db_list_data_sources", {}, secret=SECRET)[0] == 200, "old secret refused in the window")
        expect(d.call("db_list_data_sources", {}, secret=new)[0] == 200, "new secret refused")
        # a second rotation waits for the window
        rc, out, err = cli("rotate-secret", "--config", d.config_path)
        expect(rc == 1 and "window is open until" in err and "--finish" in err, err)
        # ending the window: the old secrets are refused everywhere, at once
        rc, out, err = cli("rotate-secret", "--config", d.config_path, "--finish")
        expect(rc == 0 and "removed from 5 tools" in out, out + err)
        expect(all([s["state"] for s in t["secrets"]] == ["active"] for t in FAKE.tools().values()),
               "the platform kept a deprecated secret")
        for old in (SECRET, SECRET_OLD):
            status, _, _, body = d.call("db_list_data_sources", {}, secret=old)
            expect(status == 401 and body["error"]["code"] == "invalid_signature", (status, body))
        results = FAKE.invoke(by_tool=PARAMS)
        expect(all(r["status"] == 200 for r in results), results)
        # a restarted daemon reads the rotation file: same answer
        stop(d)
        d.start()
        expect(d.call("db_list_data_sources", {}, secret=new)[0] == 200, "new secret refused after restart")
        expect(d.call("db_list_data_sources", {}, secret=SECRET)[0] == 401, "old secret back after restart")
        # tools registered from now on get the new secret
        with open(d.config_path) as f:
            text = f.read()
        write(d.config_path, text.replace("      - { name: limit, type: integer",
                                          "      - { name: limit, type: integer, description: \"Rows\""))
        rc, out, err = cli("register", "--config", d.config_path, "--no-mappings")
        expect(rc == 0 and "1 updated" in out, out + err)
        mode = os.stat(os.path.join(d.workdir, "state.db.secrets")).st_mode & 0o777
        expect(mode == 0o600, "secrets file mode %o" % mode)
    finally:
        stop(d)


def test_interrupted_rotation_carries_on():
    fresh()
    d = daemon()
    try:
        registered()
        ids = sorted((t["id"] for t in FAKE.tools().values()), key=lambda i: int(i[5:]))
        third = ids[2]
        FAKE.fault(500, count=6, path="/api/v1/tools/%s/secrets" % third, method="PATCH")
        rc, out, err = cli("rotate-secret", "--config", d.config_path)
        expect(rc == 1 and "2 of this connector's tools have the new secret" in err and
               "run rotate-secret again" in err, out + err)
        with open(os.path.join(d.workdir, "state.db.secrets")) as f:
            state = json.load(f)
        expect([s["state"] for s in state["secrets"]] == ["pending"] and
               sorted(state["patched_tools"]) == sorted(ids[:2]), state["patched_tools"])
        # meanwhile every tool answers, whichever secret the platform signs with
        for _ in range(4):
            results = FAKE.invoke(by_tool=PARAMS)
            expect(all(r["status"] == 200 for r in results), [r for r in results if r["status"] != 200])
        since = len(FAKE.log())
        rc, out, err = cli("rotate-secret", "--config", d.config_path)
        expect(rc == 0 and "carrying on with the rotation" in out and "5 tools (3 now)" in out, out + err)
        patched = [parse_path(e["path"]).split("/")[4] for e in FAKE.writes(since) if e["method"] == "PATCH"]
        expect(sorted(patched) == sorted(ids[2:]), "asked twice or not at all: %s" % patched)
        results = FAKE.invoke(by_tool=PARAMS, sign_with="active")
        expect(all(r["status"] == 200 for r in results), results)
    finally:
        stop(d)


def test_rotation_stops_when_the_daemon_does_not_confirm():
    fresh()
    d = daemon()
    try:
        registered()
        # the same state file, but the command keeps its secrets elsewhere: the daemon never sees them
        other = os.path.join(d.workdir, "other.yaml")
        with open(d.config_path) as f:
            text = f.read()
        write(other, text.replace(
            '  callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]',
            '  callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]\n  secrets_file: "elsewhere.secrets"'))
        since = len(FAKE.log())
        rc, out, err = cli("rotate-secret", "--config", other)
        expect(rc == 1 and "does not accept the new secret" in err and
               "nothing was changed on the platform" in err and "dropped" in err, out + err)
        expect(FAKE.writes(since) == [], "the platform was asked: %s" % FAKE.writes(since))
        expect(not os.path.exists(os.path.join(d.workdir, "elsewhere.secrets")), "the new secret stayed")
        results = FAKE.invoke(by_tool=PARAMS)
        expect(all(r["status"] == 200 for r in results), results)
    finally:
        stop(d)


def test_rotation_without_a_daemon():
    fresh()
    d = tmpdir("cn-nodaemon-")
    path = write(os.path.join(d, "c.yaml"), connector_config(ARGS, d, FAKE, public_url="https://c.example"))
    rc, out, err = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0, out + err)
    rc, out, err = cli("rotate-secret", "--config", path, "--dry-run")
    expect(rc == 0 and out.count("would give the new secret to") == 5, out + err)
    expect(not os.path.exists(os.path.join(d, "state.db.secrets")), "a dry run wrote the file")
    rc, out, err = cli("rotate-secret", "--config", path)
    expect(rc == 0 and "no daemon runs on this state file" in out, out + err)
    cleanup(d)


def test_refresh_pushes_changed_mappings():
    fresh()
    work = tmpdir("cn-push-")
    db = os.path.join(work, "demo.db")
    shutil.copy(ARGS.demo_db, db)
    with open(os.path.join(ARGS.source_dir, "conf", "mappings", "demo.yaml")) as f:
        mtext = f.read()
    mtext = mtext.rstrip("\n") + ('\n  promo: { description: "Promotion codes", synonyms: [coupons] }\n'
                                  '  promo.code: { description: "The code customers type" }\n')
    mappings = write(os.path.join(work, "mappings.yaml"), mtext)
    config = connector_config(ARGS, "@WORKDIR@", FAKE, public_url="http://127.0.0.1:@PORT@",
                              interactor_extra="", mappings=mappings).replace(
        'dsn: "%s"' % ARGS.demo_db, 'dsn: "%s"' % db)
    d = Daemon(ARGS, config, env_extra={"FAKE_CLIENT_SECRET": FAKE.client_secret}).start()
    try:
        ds = wait_for("the first push", lambda: FAKE.state()["data_sources"]["ds_demo"]["pushes"] == 1 and
                      FAKE.state()["data_sources"]["ds_demo"])
        expect("promo" not in ds["mappings"], "a mapping of a missing table was pushed")
        expect(FAKE.tools() == {}, "registered without register_on_start")
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE promo (code TEXT PRIMARY KEY, percent INTEGER)")
        con.commit()
        con.close()
        rc, out, err = cli("refresh", "--config", d.config_path)
        expect(rc == 0 and "table promo added" in out, out + err)
        ds = wait_for("the second push", lambda: FAKE.state()["data_sources"]["ds_demo"]["pushes"] == 2 and
                      FAKE.state()["data_sources"]["ds_demo"])
        expect(ds["mappings"]["promo"] == {"description": "Promotion codes", "synonyms": ["coupons"]} and
               ds["mappings"]["promo.code"]["description"] == "The code customers type", ds["mappings"])
        rc, out, err = cli("refresh", "--config", d.config_path)
        expect(rc == 0, out + err)
        time.sleep(1.5)
        expect(FAKE.state()["data_sources"]["ds_demo"]["pushes"] == 2, "pushed although nothing changed")
    finally:
        stop(d)
        cleanup(work)


def test_no_secret_in_logs():
    leaks = [FAKE.client_secret, SECRET, SECRET_OLD] + FAKE.state()["tokens"]
    for text in LOGS:
        for s in leaks:
            expect(s not in text, "a secret or token was logged: ...%s..." % s[:6])
    expect(any("interactor: GET /api/v1/tools?limit=100 -> 200" in t for t in LOGS), "no debug line of a call")


def main():
    global ARGS, FAKE
    ARGS = parse_args()
    FAKE = FakePlatform(ARGS.source_dir)
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_") and name != "test_no_secret_in_logs":
                r.run(name, fn)
        r.run("test_no_secret_in_logs", test_no_secret_in_logs)
    finally:
        FAKE.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
