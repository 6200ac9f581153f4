"""The audit log end to end: signed calls (answered, rejected by the guard, replayed,
refused as malformed) are recorded with every field, calls that fail the signature
check are not; `interactor-connector audit` prints them while the daemon holds the
state file (through the daemon) and after it stopped (from the file), with --since,
--source and --status; statements are kept only with audit.include_statements;
a parameter value is never in the state file nor the log; audit.enabled false records
nothing; records older than audit.retention_days are pruned at start."""

import calendar
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Daemon, Runner, expect, iso, parse_args  # noqa: E402

ARGS = None
# A parameter value that must never reach the state file or the log.
PARAM_VALUE = "zq-param-value-%d-never-stored" % os.getpid()
COUNT_SQL = "SELECT count(*) AS n\n  FROM orders\n\tWHERE status = $1"
DAY_MS = 86400 * 1000


def config(args, audit=""):
    return f"""
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
audit: {{ {audit} }}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    mappings: "{args.source_dir}/conf/mappings/demo.yaml"
  - name: other
    driver: sqlite
    dsn: "{args.demo_db}"
"""


@contextlib.contextmanager
def running(args, audit=""):
    """A daemon with these audit settings, stopped and its directory removed after."""
    d = Daemon(args, config(args, audit)).start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(d.workdir, ignore_errors=True)


def fingerprint(statement):
    """audit.h: SHA-256 of the text with whitespace runs made one space, ends trimmed."""
    norm = re.sub(r"[ \t\n\r\v\f]+", " ", statement).strip(" ")
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def audit(d, *argv, timeout=120):
    """Run `audit --config` for the daemon's config: (exit status, [records], stderr)."""
    p = subprocess.run([ARGS.binary, "audit", "--config", d.config_path, *argv],
                       capture_output=True, env=d.env, timeout=timeout)
    out = p.stdout.decode()
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return p.returncode, records, p.stderr.decode(errors="replace")


def state_bytes(d):
    """Every byte of the state file, its WAL and whatever else the store keeps beside it."""
    data = b""
    for name in os.listdir(d.workdir):
        if name.startswith("state.db") and os.path.isfile(os.path.join(d.workdir, name)):
            with open(os.path.join(d.workdir, name), "rb") as f:
                data += f.read()
    return data


def by_exec(records):
    out = {}
    for r in records:
        out.setdefault(r["execution_id"], []).append(r)
    return out


def test_records_and_command(args):
    with running(args) as d:
        t0 = time.time()
        pid = os.getpid()
        ok_id, rej_id, rep_id, bad_id, junk_id = ("exec_au_%s_%d" % (k, pid)
                                                  for k in ("ok", "rej", "rep", "bad", "junk"))
        s, _, raw_ok, body = d.call("run_query", {"source": "demo", "query": COUNT_SQL,
                                                  "parameters": [PARAM_VALUE]}, exec_id=ok_id)
        expect(s == 200, raw_ok[:300])
        s, _, raw_rej, _ = d.call("run_query", {"source": "demo", "query": "DELETE FROM orders"},
                                  exec_id=rej_id)
        expect(s == 400 and b"query_rejected" in raw_rej, raw_rej[:300])
        s1, _, raw_rep, _ = d.call("list_data_sources", {}, exec_id=rep_id)
        s2, _, raw_rep2, _ = d.call("list_data_sources", {}, exec_id=rep_id)
        expect(s1 == 200 and s2 == 200 and raw_rep == raw_rep2, "replay")
        s, _, _, _ = d.call("run_query", {"source": "demo", "query": COUNT_SQL,
                                          "parameters": [PARAM_VALUE]},
                            exec_id=bad_id, secret="not-the-secret-0123456789abcdef")
        expect(s == 401, "a wrong secret: %d" % s)
        # signed, but the tool in the body differs from the URL's: recorded as invalid_request
        body_junk = json.dumps({"tool_name": "describe_schema", "parameters": {},
                                "execution_id": junk_id, "timestamp": iso(time.time())}).encode()
        s, _, raw_junk, _ = d.call("list_data_sources", None, body=body_junk, exec_id=junk_id)
        expect(s == 400, raw_junk[:200])
        t1 = time.time()

        rc, recs, err = audit(d)
        expect(rc == 0, "audit: %d %s" % (rc, err))
        got = by_exec(recs)
        expect(bad_id not in got, "a call with a bad signature was recorded: %s" % got.get(bad_id))
        expect(len(recs) == 5, "five records: %s" % recs)
        expect([r["id"] for r in recs] == sorted(r["id"] for r in recs), "oldest first")

        ok = got[ok_id][0]
        when = calendar.timegm(time.strptime(ok["time"][:19], "%Y-%m-%dT%H:%M:%S"))
        expect(t0 - 2 <= when <= t1 + 2 and re.fullmatch(r".*\.\d{3}Z", ok["time"]), ok["time"])
        want = {"execution_id": ok_id, "assistant_id": "asst_e2e", "room_id": "room_e2e",
                "tool": "run_query", "source": "demo", "fingerprint": fingerprint(COUNT_SQL),
                "rows": 1, "bytes": len(raw_ok), "status": 200, "code": None}
        for k, v in want.items():
            expect(ok[k] == v, "ok.%s: %r, want %r" % (k, ok[k], v))
        expect(0 < ok["duration_ms"] < (t1 - t0) * 1000 + 1, ok["duration_ms"])
        expect("statement" not in ok, "the statement without include_statements")
        expect(fingerprint(COUNT_SQL) == fingerprint("SELECT count(*) AS n FROM orders WHERE status = $1"),
               "layout does not change a fingerprint")

        rej = got[rej_id][0]
        expect(rej["status"] == 400 and rej["code"] == "query_rejected" and rej["rows"] is None
               and rej["fingerprint"] == fingerprint("DELETE FROM orders")
               and rej["bytes"] == len(raw_rej) and rej["source"] == "demo", rej)

        first, again = got[rep_id]
        expect(first["code"] is None and first["fingerprint"] is None and first["source"] is None
               and first["tool"] == "list_data_sources", first)
        expect(again["code"] == "replayed" and again["status"] == 200
               and again["bytes"] == len(raw_rep2) and again["id"] > first["id"], again)

        junk = got[junk_id][0]
        expect(junk["code"] == "invalid_request" and junk["status"] == 400
               and junk["tool"] == "list_data_sources" and junk["assistant_id"] is None, junk)

        # filters, through the daemon
        def ids(*argv):
            rc_, rs, e = audit(d, *argv)
            expect(rc_ == 0, "audit %s: %d %s" % (argv, rc_, e))
            return {r["execution_id"] for r in rs}
        expect(ids("--status", "replayed") == {rep_id}, "--status replayed")
        expect(ids("--status", "400") == {rej_id, junk_id}, "--status 400")
        expect(ids("--status", "query_rejected") == {rej_id}, "--status query_rejected")
        expect(ids("--status", "ok") == {ok_id, rep_id}, "--status ok")
        expect(ids("--source", "demo") == {ok_id, rej_id}, "--source demo")
        expect(ids("--source", "other") == set(), "--source other")
        expect(len(ids("--since", "1h")) == 4, "--since 1h")
        expect(ids("--since", iso(time.time() + 3600)) == set(), "--since in the future")
        expect(ids("--since", "2000-01-01", "--source", "demo", "--status", "200") == {ok_id},
               "filters together")

        # bad usage names the problem
        rc, _, err = audit(d, "--since", "yesterday")
        expect(rc == 2 and "--since 'yesterday'" in err and "24h" in err, (rc, err))
        rc, _, err = audit(d, "--status", "20x")
        expect(rc == 2 and "--status '20x'" in err, (rc, err))
        rc, _, err = audit(d, "--source", "no such")
        expect(rc == 2 and "not a source name" in err, (rc, err))
        p = subprocess.run([ARGS.binary, "audit", "--help"], capture_output=True, text=True)
        expect(p.returncode == 0 and "--since" in p.stdout and "JSON" in p.stdout, p.stdout)

        # the metrics count what was written
        status, _, text = d.request("GET", "/metrics")
        m = re.search(rb"^interactor_connector_audit_records_written_total (\d+)$", text, re.M)
        expect(status == 200 and m and int(m.group(1)) == 5, text[-600:])
        expect(re.search(rb"^interactor_connector_audit_records_dropped_total 0$", text, re.M),
               "dropped")

        expect(PARAM_VALUE.encode() not in state_bytes(d), "the parameter value is in the state file")
        with_daemon = audit(d)[1]
        d.stop()
        # without a daemon the command reads the file itself, and prints the same
        rc, without, err = audit(d)
        expect(rc == 0 and without == with_daemon, "without the daemon: %s %s" % (err, without))
        data = state_bytes(d)
        expect(ok_id.encode() in data, "the audit rows are in the state file")
        expect(PARAM_VALUE.encode() not in data, "the parameter value is in the state file")
        expect(PARAM_VALUE not in d.log_text(), "the parameter value is in the log")


def test_include_statements(args):
    with running(args, "include_statements: true") as d:
        sql = "SELECT id, ordered_at\nFROM orders WHERE status = $1 -- é\nLIMIT 3"
        s, _, raw, _ = d.call("run_query", {"source": "demo", "query": sql, "parameters": [PARAM_VALUE]})
        expect(s == 200, raw[:300])
        rc, recs, err = audit(d, "--source", "demo")
        expect(rc == 0 and len(recs) == 1, (rc, err, recs))
        expect(recs[0]["statement"] == sql and recs[0]["fingerprint"] == fingerprint(sql), recs[0])
        expect(recs[0]["rows"] == 0, recs[0])
        d.stop()
        data = state_bytes(d)
        expect(b"FROM orders WHERE status = $1" in data, "the statement is kept")
        expect(PARAM_VALUE.encode() not in data, "the parameter value is in the state file")


def test_disabled(args):
    with running(args, "enabled: false") as d:
        for _ in range(3):
            s, _, raw, _ = d.call("run_query", {"source": "demo", "query": COUNT_SQL,
                                                "parameters": [PARAM_VALUE]})
            expect(s == 200, raw[:200])
        rc, recs, err = audit(d)
        expect(rc == 0 and recs == [], "audit.enabled false recorded: %s %s" % (recs, err))
        status, _, text = d.request("GET", "/metrics")
        expect(re.search(rb"^interactor_connector_audit_records_written_total 0$", text, re.M), text[-400:])


def test_retention(args):
    with running(args) as d:
        d.stop()  # the state file now has its tables
        now_ms = int(time.time() * 1000)
        db = sqlite3.connect(os.path.join(d.workdir, "state.db"))
        for age in (40, 20, 5):
            for i in range(3):
                db.execute("INSERT INTO audit(at, execution_id, tool, bytes, status, duration_us)"
                           " VALUES (?, ?, 'list_data_sources', 10, 200, 5)",
                           (now_ms - age * DAY_MS - i, "exec_age_%d_%d" % (age, i)))
        db.commit()
        db.close()

        def ages():
            rc, recs, err = audit(d, "--since", "2000-01-01")
            expect(rc == 0, err)
            return sorted({int(r["execution_id"].split("_")[2]) for r in recs}, reverse=True)

        expect(ages() == [40, 20, 5], "before pruning: %s" % ages())
        d.start()  # the default 30 days: pruned at start
        expect(ages() == [20, 5], "30 days kept: %s" % ages())
        expect("audit log: 3 record(s) older than 30 days removed" in d.log_text(), d.log_text()[-800:])
        d.stop()
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("audit: {  }", "audit: { retention_days: 7 }"))
        d.start()
        expect(ages() == [5], "7 days kept: %s" % ages())
        d.stop()
        with open(d.config_path, "w") as f:
            f.write(text.replace("audit: {  }", "audit: { retention_days: 5 }"))
        p = subprocess.run([ARGS.binary, "check-config", "--config", d.config_path, "--quiet"],
                           capture_output=True, text=True, env=d.env)
        expect(p.returncode == 1 and "audit.retention_days" in p.stderr and "7" in p.stderr, p.stderr)


def test_no_state_file(args):
    d = Daemon(args, config(args))  # never started: no state file
    try:
        rc, recs, err = audit(d)
        expect(rc == 1 and "no state file" in err and recs == [], (rc, err))
        expect(not os.path.exists(os.path.join(d.workdir, "state.db")), "the command made a state file")
    finally:
        shutil.rmtree(d.workdir, ignore_errors=True)


def main():
    global ARGS
    ARGS = parse_args()
    r = Runner()
    r.run("test_records_and_command", test_records_and_command, ARGS)
    r.run("test_include_statements", test_include_statements, ARGS)
    r.run("test_disabled", test_disabled, ARGS)
    r.run("test_retention", test_retention, ARGS)
    r.run("test_no_state_file", test_no_state_file, ARGS)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
