"""Reload without a restart (SIGHUP and `interactor-connector reload`): 20 reloads that add
and drop a source, change mappings, rotate secrets and include broken files, under load from
keep-alive clients, with no failed request; a query running on a source that a reload drops
finishes on what it started with; secrets, mappings and limits take effect; a file that does
not load is refused with its reason and the daemon keeps going; keys that need a restart are
named; the TLS certificate is replaced for new connections while old ones keep theirs."""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, Daemon, Runner, count_for, count_query, expect, parse_args  # noqa: E402

NEW_SECRET = "e2e-rotated-secret-fedcba9876543210"


def config(args, mappings, secrets=("${E2E_SECRET}",), extra=False, max_rows=1000,
           server="", level="info", broken=""):
    sec = ", ".join('"%s"' % s for s in secrets)
    src = f"""
  - name: extra
    driver: sqlite
    dsn: "{args.demo_db}"
    limits: {{ timeout_ms: 20000 }}
""" if extra else ""
    return f"""
server: {{ {server} }}
auth: {{ callback_secrets: [{sec}] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: {level}, format: json }}
{broken}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    mappings: "{mappings}"
    limits: {{ max_rows: {max_rows} }}
{src}"""


def rewrite(d, text):
    """Replace the daemon's configuration file (atomically, as an editor or a deploy would)."""
    tmp = d.config_path + ".new"
    with open(tmp, "w") as f:
        f.write(text.replace("@WORKDIR@", d.workdir))
    os.replace(tmp, d.config_path)


def reload_cli(d):
    p = subprocess.run([d.args.binary, "reload", "--config", d.config_path, "--timeout", "60"],
                       env=d.env, capture_output=True, text=True, timeout=90)
    return p.returncode, p.stdout + p.stderr


def outcome(d):
    with open(os.path.join(d.workdir, "state.db.reload")) as f:
        return json.load(f)


def hidden_mappings(args, tmp):
    """The demo mappings with customers.email hidden as well."""
    path = os.path.join(tmp, "demo-hidden.yaml")
    with open(os.path.join(args.source_dir, "conf/mappings/demo.yaml")) as f:
        text = f.read()
    text = text.replace("  customers.email:\n", "  customers.email:\n    hidden: true\n", 1)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_reloads_under_load(args, tmp):
    base = os.path.join(args.source_dir, "conf/mappings/demo.yaml")
    hidden = hidden_mappings(args, tmp)
    configs = [
        ("a source added", config(args, base, extra=True)),
        ("mappings changed", config(args, hidden, extra=True)),
        ("secrets rotated in", config(args, hidden, secrets=(NEW_SECRET, "${E2E_SECRET}"))),
        ("a broken file", config(args, base, broken="nonsense: [")),
        ("an unknown key", config(args, base, broken="bogus: 1")),
        ("log level", config(args, base, level="debug")),
        ("limits", config(args, base, max_rows=7)),
        ("back to the start", config(args, base)),
    ]
    d = Daemon(args, config(args, base)).start()
    stop = threading.Event()
    failures, counts = [], [0]
    lock = threading.Lock()

    def client(k):
        conn = d.connect(timeout=30)  # one keep-alive connection across every reload
        calls = [("run_query", {"source": "demo", "query": "SELECT id FROM customers ORDER BY id "
                                "LIMIT $1", "parameters": [3]}),
                 ("describe_schema", {"source": "demo", "tables": ["customers"]}),
                 ("list_data_sources", {})]
        i = 0
        while not stop.is_set():
            tool, params = calls[(i + k) % len(calls)]
            i += 1
            try:
                s, _, raw, _ = d.call(tool, params, conn=conn)
            except Exception as e:  # noqa: BLE001 - every failure counts
                with lock:
                    failures.append("%s: %r" % (tool, e))
                conn.close()
                conn = d.connect(timeout=30)
                continue
            with lock:
                counts[0] += 1
                if s != 200:
                    failures.append("%s: %d %s" % (tool, s, raw[:200]))
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    refused = 0
    try:
        for n in range(20):
            what, text = configs[n % len(configs)]
            rewrite(d, text)
            before = counts[0]
            if n % 2:
                try:
                    seen = outcome(d)["attempt"]
                except OSError:
                    seen = 0
                d.proc.send_signal(signal.SIGHUP)
                deadline = time.time() + 30
                while time.time() < deadline:
                    try:
                        if outcome(d)["attempt"] > seen:
                            break
                    except (OSError, ValueError):
                        pass
                    time.sleep(0.02)
                o = outcome(d)
                expect(o["attempt"] == seen + 1, "SIGHUP %d got no outcome: %s" % (n, o))
                ok = o["status"] == "ok"
            else:
                # the command reads the file first: a broken one is not even sent
                rc, out = reload_cli(d)
                ok = rc == 0
                expect(("reloaded:" in out) == ok, "reload %d (%s): %d %s" % (n, what, rc, out))
                expect(ok or "nothing was sent" in out or "refused" in out, out)
            broken = what in ("a broken file", "an unknown key")
            expect(ok != broken, "reload %d (%s): ok=%s" % (n, what, ok))
            refused += broken
            # calls go on between reloads
            deadline = time.time() + 10
            while counts[0] < before + 20 and time.time() < deadline:
                time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(60)
        expect(not failures, "%d failed of %d: %s" % (len(failures), counts[0], failures[:5]))
        expect(counts[0] >= 400, "only %d calls" % counts[0])
        log = d.log_text()
        # the daemon refused what reached it (the command keeps broken files to itself)
        expect(log.count("reload refused") >= 1, "refusals logged")
        expect("did not find expected" in log, "the refusal says why")
        s, _, raw, _ = d.call("list_data_sources", {})
        expect(s == 200, raw[:200])
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        d.stop()
    print("  %d calls, %d reloads (%d refused), none failed" % (counts[0], 20, refused))


def test_what_a_reload_changes(args, tmp):
    base = os.path.join(args.source_dir, "conf/mappings/demo.yaml")
    hidden = hidden_mappings(args, tmp)
    d = Daemon(args, config(args, base, extra=True)).start()
    try:
        # a slow query on `extra` keeps running while a reload drops `extra`
        slow = {}
        n = count_for(d, "extra", 2)

        def run_slow():
            slow["r"] = d.call("run_query", {"source": "extra", "query": count_query(n)})

        t = threading.Thread(target=run_slow)
        t.start()
        time.sleep(0.3)
        rewrite(d, config(args, hidden, secrets=(NEW_SECRET,), max_rows=2))
        rc, out = reload_cli(d)
        # demo's entry changed (mappings, limits): opened anew; extra is gone
        expect(rc == 0 and "1 opened, 1 closed" in out, out)
        t.join(60)
        s, _, raw, body = slow["r"]
        expect(s == 200 and body["result"]["rows"][0][0] == n, "the running query: %s"
               % raw[:200])
        # the old secret is gone, the new one works
        s, _, _, _ = d.call("list_data_sources", {})
        expect(s == 401, "the removed secret still signs: %d" % s)
        s, _, raw, body = d.call("list_data_sources", {}, secret=NEW_SECRET)
        expect(s == 200 and [x["name"] for x in body["result"]["sources"]] == ["demo"], raw[:300])
        # the new mappings hide customers.email; the new limit caps rows at 2
        s, _, raw, body = d.call("describe_schema", {"source": "demo", "tables": ["customers"]},
                                 secret=NEW_SECRET)
        cols = [c["name"] for c in body["result"]["tables"][0]["columns"]]
        expect(s == 200 and "email" not in cols and "name" in cols, raw[:300])
        s, _, raw, body = d.call("run_query", {"source": "demo",
                                               "query": "SELECT id, email FROM customers"},
                                 secret=NEW_SECRET)
        r = body["result"]
        expect(s == 200 and r["row_count"] == 2 and r["truncated"], raw[:300])
        expect("email" not in r["columns"], "hidden column read: %s" % r)
        # keys that need a restart are named, and the rest applies
        rewrite(d, config(args, base, secrets=(NEW_SECRET,), server="max_connections: 99"))
        rc, out = reload_cli(d)
        expect(rc == 0 and "server.max_connections changed: it takes effect at the next restart"
               in out, out)
        # plain HTTP cannot turn into HTTPS without a restart
        rewrite(d, config(args, base, secrets=(NEW_SECRET,),
                          server='tls: { cert: "/nonexistent.pem", key: "/nonexistent.key" }'))
        rc, out = reload_cli(d)
        expect(rc == 1 and "refused" in out and "restart" in out, out)
        s, _, _, _ = d.call("list_data_sources", {}, secret=NEW_SECRET)
        expect(s == 200, "after a refused reload: %d" % s)
        # no daemon: the command says so
        d.stop()
        rc, out = reload_cli(d)
        expect(rc == 1 and "no daemon runs" in out, out)
    finally:
        d.stop()


def make_ca(d):
    def run(*cmd):
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=reload test CA", "-keyout", "ca.key", "-out", "ca.pem")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for name in ("one", "two"):
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
            "-keyout", name + ".key", "-out", name + ".csr")
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", name + ".pem")


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_certificate_replaced(args, tmp):
    make_ca(tmp)
    base = os.path.join(args.source_dir, "conf/mappings/demo.yaml")
    cert, key = os.path.join(tmp, "live.pem"), os.path.join(tmp, "live.key")
    shutil.copy(os.path.join(tmp, "one.pem"), cert)
    shutil.copy(os.path.join(tmp, "one.key"), key)
    tls = 'tls: { cert: "%s", key: "%s" }' % (cert, key)
    ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.pem"))
    d = Daemon(args, config(args, base, server=tls), ssl_context=ctx).start()
    try:
        old = d.connect()
        s, _, _, _ = d.call("list_data_sources", {}, conn=old)
        expect(s == 200 and old.sock.getpeercert(True) == der(cert), "certificate one")
        # a key that is not the certificate's: refused, the old pair stays
        shutil.copy(os.path.join(tmp, "two.pem"), cert)
        rc, out = reload_cli(d)
        expect(rc == 1 and "do not load together" in out, out)
        c = d.connect()
        d.call("list_data_sources", {}, conn=c)
        expect(c.sock.getpeercert(True) == der(os.path.join(tmp, "one.pem")),
               "a refused pair was used")
        c.close()
        # the renewed pair: new connections get it, the open one keeps working
        shutil.copy(os.path.join(tmp, "two.key"), key)
        rc, out = reload_cli(d)
        expect(rc == 0, out)
        c = d.connect()
        s, _, _, _ = d.call("list_data_sources", {}, conn=c)
        expect(s == 200 and c.sock.getpeercert(True) == der(cert), "certificate two")
        c.close()
        s, _, _, _ = d.call("list_data_sources", {}, conn=old)
        expect(s == 200 and old.sock.getpeercert(True) == der(os.path.join(tmp, "one.pem")),
               "the open connection")
        old.close()
        # the metrics: the new certificate's expiry, one reload applied and one refused
        s, _, raw = d.request("GET", "/metrics")
        m = {}
        for fam in text_string_to_metric_families(raw.decode()):
            for smp in fam.samples:
                m[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
        expiry = ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(cert)["notAfter"])
        expect(m[("interactor_connector_tls_certificate_expiry_timestamp_seconds", ())] == expiry,
               "certificate expiry")
        expect(m[("interactor_connector_config_reloads_total", (("result", "ok"),))] == 1 and
               m[("interactor_connector_config_reloads_total", (("result", "refused"),))] == 1,
               "reload counters")
    finally:
        d.stop()


def main():
    args = parse_args()
    r = Runner()
    with tempfile.TemporaryDirectory(prefix="cn-reload-") as tmp:
        r.run("test_reloads_under_load", test_reloads_under_load, args, tmp)
        r.run("test_what_a_reload_changes", test_what_a_reload_changes, args, tmp)
        r.run("test_certificate_replaced", test_certificate_replaced, args, tmp)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
