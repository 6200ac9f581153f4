"""register and push-mappings against the fake Interactor platform: an
idempotent sync, one changed description updating one tool, prune, a token that
expires mid-sync, 401, 429 and 500 answers, bad credentials, TLS verified
always, a proxy from the environment, mappings pushed only when they change,
and no token or secret in any output."""

import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, SECRET_OLD, Runner, expect, parse_args  # noqa: E402
from fakeplatform import (CURATED, FakePlatform, cleanup, connector_config, free_port,  # noqa: E402
                      parse_path, run_cli, tmpdir, write)

ARGS = None
FAKE = None
OUTPUTS = []  # every stdout and stderr of the connector: checked for secrets at the end


def setup(**kw):
    """A fresh platform state and a config of the test's own. Returns (config path, env)."""
    FAKE.reset()
    FAKE.data_source("ds_demo")
    d = tmpdir("cn-reg-")
    return write(os.path.join(d, "connector.yaml"), connector_config(ARGS, d, FAKE, **kw)), d


def cli(*argv, env=None, timeout=180):
    e = {"FAKE_CLIENT_SECRET": FAKE.client_secret}
    e.update(env or {})
    rc, out, err, took = run_cli(ARGS, *argv, env=e, timeout=timeout)
    OUTPUTS.append(out + err)
    return rc, out, err, took


def tool_writes(since):
    return [(e["method"], parse_path(e["path"]), e["status"]) for e in FAKE.writes(since)
            if "/tools" in e["path"]]


def test_dry_run_changes_nothing():
    path, _ = setup()
    rc, out, err, _ = cli("register", "--config", path, "--dry-run")
    expect(rc == 0, out + err)
    expect("create     db_orders_by_status" in out and "5 to create" in out, out)
    expect("demo: would push" in out, out)
    expect(FAKE.writes() == [] and FAKE.tools() == {}, "a dry run wrote: %s" % FAKE.writes())


def test_register_twice_changes_nothing():
    path, _ = setup(public_url="https://connector.example.com")
    rc, out, err, _ = cli("register", "--config", path)
    expect(rc == 0, out + err)
    expect("5 created, 0 updated, 0 unchanged" in out, out)
    tools = FAKE.tools()
    expect(set(tools) == {"db_list_data_sources", "db_describe_schema", "db_search_schema", "db_run_query",
                          "db_orders_by_status"}, tools.keys())
    t = tools["db_orders_by_status"]
    expect(t["callback_url"] == "https://connector.example.com/v1/tools/db_orders_by_status", t)
    expect(t["secrets"][0]["secret"] == SECRET, "the tool got the first configured secret")
    params = t["parameters"]
    expect(params["required"] == ["status"] and params["additionalProperties"] is False, params)
    expect(params["properties"]["since"] == {"type": "string", "format": "date",
                                             "description": "Orders placed on or after this day",
                                             "default": "2000-01-01"}, params["properties"]["since"])
    expect(params["properties"]["limit"]["minimum"] == 1 and params["properties"]["limit"]["default"] == 5,
           params)
    # the tools command prints exactly what was registered
    rc, printed, _, _ = cli("tools", "--config", path)
    expect(rc == 0, printed)
    for p in json.loads(printed):
        reg = tools[p["name"]]
        expect(p["parameters"] == reg["parameters"] and p["description"] == reg["description"] and
               p["callback_url"] == reg["callback_url"], p["name"])
    since = len(FAKE.log())
    rc, out, err, _ = cli("register", "--config", path)
    expect(rc == 0 and "0 created, 0 updated, 5 unchanged, 0 deleted" in out, out + err)
    expect(tool_writes(since) == [], "the second run wrote: %s" % tool_writes(since))
    expect(not [e for e in FAKE.writes(since)], "the second run pushed mappings again: %s" % FAKE.writes(since))


def test_changed_description_updates_one_tool():
    path, _ = setup()
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0, out + err)
    before = FAKE.tools()
    with open(path) as f:
        text = f.read()
    write(path, text.replace("Orders in one status, newest first", "Orders in one status, latest first"))
    since = len(FAKE.log())
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "update     db_orders_by_status (description)" in out, out + err)
    expect("0 created, 1 updated, 4 unchanged" in out, out)
    w = FAKE.writes(since)
    expect([(e["method"], parse_path(e["path"])) for e in w] ==
           [("PUT", "/api/v1/tools/%s" % before["db_orders_by_status"]["id"])], w)
    expect(w[0]["body"] == {"description": "Orders in one status, latest first, with their customer"},
           w[0]["body"])
    expect("callback_secret" not in json.dumps(w[0]["body"]), "an update sent the secret")


def test_public_url_moves_every_callback():
    path, _ = setup()
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0, out + err)
    with open(path) as f:
        text = f.read()
    write(path, text.replace("http://127.0.0.1:9", "https://moved.example.com"))
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "0 created, 5 updated" in out and "(callback_url)" in out, out + err)
    expect(all(t["callback_url"].startswith("https://moved.example.com/v1/tools/db_")
               for t in FAKE.tools().values()), FAKE.tools())


def test_prune_deletes_only_this_connectors_tools():
    path, _ = setup()
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0, out + err)
    # another connector's tools in the same account, and a tool of ours no longer offered
    other = tmpdir("cn-other-")
    other_cfg = write(os.path.join(other, "connector.yaml"),
                      connector_config(ARGS, other, FAKE, interactor_extra='tool_prefix: "hr_"',
                                       ds_id=None))
    rc, out, err, _ = cli("register", "--config", other_cfg, "--no-mappings")
    expect(rc == 0 and "5 created" in out, out + err)
    with open(path) as f:
        text = f.read()
    write(path, text.replace(CURATED, ""))
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "stale      db_orders_by_status" in out and "--prune deletes it" in out, out + err)
    expect("db_orders_by_status" in FAKE.tools(), "deleted without --prune")
    since = len(FAKE.log())
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings", "--prune")
    expect(rc == 0 and "delete     db_orders_by_status" in out and "1 deleted" in out, out + err)
    w = FAKE.writes(since)
    expect([e["method"] for e in w] == ["DELETE"], w)
    names = set(FAKE.tools())
    expect("db_orders_by_status" not in names and {"hr_run_query", "hr_orders_by_status"} <= names, names)
    # an empty prefix refuses to prune
    empty = write(os.path.join(other, "empty.yaml"),
                  connector_config(ARGS, other, FAKE, interactor_extra='tool_prefix: ""', ds_id=None))
    rc, out, err, _ = cli("register", "--config", empty, "--prune", "--no-mappings")
    expect(rc == 1 and "interactor.tool_prefix is empty" in err, out + err)
    cleanup(other)


def test_token_expires_mid_sync():
    path, _ = setup()
    # tokens live 2 s, the listing comes one tool a page, each answer takes 0.5 s
    FAKE.configure(token_ttl=2, page_size=1, delay_ms=500)
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0, out + err)
    rc, out, err, took = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "5 unchanged" in out, out + err)
    expect(took > 2.5, "the sync took %.1f s: too short to outlive a token" % took)
    log = FAKE.log()
    expect(not [e for e in log if e["status"] == 401], "a call used an expired token: %s" %
           [e for e in log if e["status"] == 401])
    expect(FAKE.state()["tokens_issued"] >= 3, "tokens were not renewed before expiry")
    FAKE.configure(token_ttl=900, page_size=100, delay_ms=0)


def test_401_fetches_a_new_token_once():
    path, _ = setup()
    FAKE.fault(401, count=1, path="/api/v1/tools", method="GET")
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "5 created" in out, out + err)
    seq = [(e["method"], parse_path(e["path"]), e["status"]) for e in FAKE.log()]
    expect(seq[:4] == [("POST", "/auth/api/v1/oauth/token", 200), ("GET", "/api/v1/tools", 401),
                       ("POST", "/auth/api/v1/oauth/token", 200), ("GET", "/api/v1/tools", 200)], seq[:4])
    # twice in a row: it gives up, saying so
    FAKE.reset()
    FAKE.fault(401, count=2, path="/api/v1/tools", method="GET")
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 1 and "401" in err and "a new token was refused too" in err, out + err)


def test_429_waits_retry_after():
    path, _ = setup()
    FAKE.fault(429, count=2, path="/api/v1/tools", method="GET", retry_after=1)
    rc, out, err, took = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "5 created" in out, out + err)
    expect(took >= 2.0, "retried after %.2f s, before Retry-After" % took)
    lists = [e for e in FAKE.log() if e["method"] == "GET"]
    expect([e["status"] for e in lists] == [429, 429, 200], lists)
    # one call, one X-Client-Request-Id across its retries; each call its own
    expect(len({e["client_request_id"] for e in lists}) == 1 and lists[0]["client_request_id"], lists)
    ids = [e["client_request_id"] for e in FAKE.log() if e["method"] == "POST"]
    expect(len(set(ids)) == len(ids) and all(ids), ids)
    expect("rate limited" in err and "retrying in 1000 ms" in err, err)
    # a wait longer than a minute is not waited
    FAKE.reset()
    FAKE.fault(429, count=1, path="/api/v1/tools", method="GET", retry_after=3600)
    rc, out, err, took = cli("register", "--config", path, "--no-mappings")
    expect(rc == 1 and "asks to wait 3600 s" in err and took < 30, (took, err))


def test_500_backs_off_and_gives_up_bounded():
    path, _ = setup()
    FAKE.fault(500, count=2, path="/api/v1/tools", method="POST")
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 0 and "5 created" in out, out + err)
    posts = [e["status"] for e in FAKE.log() if e["method"] == "POST" and "/tools" in e["path"]]
    expect(posts[:3] == [500, 500, 201] and len(posts) == 7, posts)
    FAKE.reset()
    FAKE.fault(503, count=100, path="/api/v1/tools", method="GET")
    rc, out, err, took = cli("register", "--config", path, "--no-mappings")
    expect(rc == 1 and "gave up after 6 attempts" in err and "503" in err, out + err)
    expect(took < 60, "gave up after %.1f s" % took)


def test_bad_credentials():
    path, _ = setup()
    rc, out, err, _ = cli("register", "--config", path, env={"FAKE_CLIENT_SECRET": "wrong-client-secret-xyz"})
    expect(rc == 1 and "refused the client credentials" in err and "interactor.client_secret" in err, err)
    expect("wrong-client-secret-xyz" not in out + err, "the client secret was printed")
    # no credentials at all
    d = tmpdir("cn-nocred-")
    text = connector_config(ARGS, d, FAKE).replace('client_id: "%s"' % FAKE.client_id, 'client_id: ""')
    rc, out, err, _ = cli("register", "--config", write(os.path.join(d, "c.yaml"), text))
    expect(rc == 1 and "interactor.client_id is not set" in err, err)
    cleanup(d)


def test_tls_is_verified():
    FAKE.reset()
    d = tmpdir("cn-tls-")
    path = write(os.path.join(d, "c.yaml"), connector_config(ARGS, d, FAKE, ca=False))
    rc, out, err, _ = cli("register", "--config", path, "--no-mappings")
    expect(rc == 1 and "TLS failed" in err and "interactor.ca_file" in err, out + err)
    expect(FAKE.log() == [], "a request got through unverified TLS")
    cleanup(d)


def test_proxy_from_the_environment():
    path, d = setup()
    port = free_port()
    log = os.path.join(d, "proxy.log")
    proxy = subprocess.Popen(["/usr/bin/python3", os.path.join(ARGS.source_dir, "tests", "support",
                                                               "connect_proxy.py"),
                              "--port", str(port), "--log", log], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        rc, out, err, _ = cli("register", "--config", path, "--no-mappings",
                              env={"https_proxy": "http://127.0.0.1:%d" % port})
        expect(rc == 0 and "5 created" in out, out + err)
        with open(log) as f:
            tunnels = f.read().split("\n")
        expect("CONNECT 127.0.0.1:%d" % FAKE.port in tunnels, tunnels)
        # no_proxy wins, as libcurl reads it
        os.remove(log)
        rc, out, err, _ = cli("register", "--config", path, "--no-mappings",
                              env={"https_proxy": "http://127.0.0.1:%d" % port, "no_proxy": "127.0.0.1"})
        expect(rc == 0 and not os.path.exists(log), "no_proxy was not honoured")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_mappings_pushed_when_they_change():
    path, d = setup()
    rc, out, err, _ = cli("push-mappings", "--config", path)
    expect(rc == 0 and "demo: pushed" in out, out + err)
    ds = FAKE.state()["data_sources"]["ds_demo"]
    m = ds["mappings"]
    expect(m["customers"]["synonyms"] and m["customers.created_at"]["description"], m.keys())
    expect("customers.phone" not in m and not any(k.startswith("internal_audit_log") for k in m),
           "hidden tables or columns were pushed")
    # unchanged: nothing sent
    since = len(FAKE.log())
    rc, out, err, _ = cli("push-mappings", "--config", path)
    expect(rc == 0 and "unchanged since they were pushed" in out and FAKE.writes(since) == [], out)
    # --force sends anyway; --dry-run never
    rc, out, err, _ = cli("push-mappings", "--config", path, "--force", "demo")
    expect(rc == 0 and len(FAKE.writes(since)) == 1, out + err)
    rc, out, err, _ = cli("push-mappings", "--config", path, "--force", "--dry-run")
    expect(rc == 0 and "would push" in out and len(FAKE.writes(since)) == 1, out)
    # a changed mapping file changes the content: pushed again
    with open(os.path.join(ARGS.source_dir, "conf", "mappings", "demo.yaml")) as f:
        mtext = f.read()
    changed = write(os.path.join(d, "demo-mappings.yaml"),
                    mtext.replace("Customer accounts", "Shop customer accounts", 1))
    with open(path) as f:
        text = f.read()
    write(path, text.replace("%s/conf/mappings/demo.yaml" % ARGS.source_dir, changed))
    rc, out, err, _ = cli("push-mappings", "--config", path)
    expect(rc == 0 and "demo: pushed" in out, out + err)
    m = FAKE.state()["data_sources"]["ds_demo"]["mappings"]
    expect(m["customers"]["description"].startswith("Shop customer accounts"), m["customers"])
    # an unknown data source: a clear error and exit 1
    write(path, text.replace('interactor_data_source_id: "ds_demo"', 'interactor_data_source_id: "ds_nope"'))
    rc, out, err, _ = cli("push-mappings", "--config", path)
    expect(rc == 1 and "ds_nope" in out + err and "404" in out + err, out + err)


def test_no_secret_in_any_output():
    st = FAKE.state()
    leaks = [FAKE.client_secret, SECRET, SECRET_OLD] + st["tokens"]
    for text in OUTPUTS:
        for s in leaks:
            expect(s not in text, "a secret or token was printed: ...%s..." % s[:6])
    expect(len(st["tokens"]) > 0, "no token was ever issued")


def main():
    global ARGS, FAKE
    ARGS = parse_args()
    FAKE = FakePlatform(ARGS.source_dir)
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_") and name != "test_no_secret_in_any_output":
                r.run(name, fn)
        r.run("test_no_secret_in_any_output", test_no_secret_in_any_output)
    finally:
        FAKE.stop()
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
