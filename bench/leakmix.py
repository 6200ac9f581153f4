#!/usr/bin/env python3
"""bench/leakmix.py - a fixed mix of signed and broken callbacks for bench/leakcheck.sh.

Sends N requests (default 1000) to a running connector from W worker threads,
each on its own keep-alive connection, in a shuffled but seeded order:

  run_query ok, run_query rejected by the guard, run_query the database refuses,
  run_query with invalid parameters, describe_schema (whole and filtered),
  list_data_sources, replays of earlier execution_ids, bad signatures, stale
  timestamps, missing signature headers, malformed JSON, an unknown tool,
  oversize bodies (over 128 KiB), GET /healthz.

Every request has its expected status; the output is one key=value line
(sent=, unexpected=, per-kind counts) and, for each kind that got another
status than expected, a line with what came back. Exit 0 when every request
was answered (whatever the statuses), 1 when the server could not be reached.

The callback secret comes from the environment variable named by --secret-env
and is never printed.
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import sys
import threading
import time

# (kind, share of the mix in per mille, expected status)
MIX = [
    ("query_ok", 300, 200),
    ("query_rejected", 100, 400),
    ("query_db_error", 50, 400),
    ("query_bad_params", 25, 400),
    ("describe_all", 60, 200),
    ("describe_some", 40, 200),
    ("list_sources", 50, 200),
    ("replay", 100, 200),
    ("bad_signature", 100, 401),
    ("stale_timestamp", 25, 401),
    ("no_signature", 25, 401),
    ("malformed_json", 50, 400),
    ("unknown_tool", 25, 404),
    ("oversize", 40, 413),
    ("healthz", 10, 200),
]

REJECTED = [
    "DELETE FROM orders WHERE id = $1",
    "SELECT 1; DROP TABLE orders",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "PRAGMA writable_schema = 1",
    "SELECT load_extension('x')",
]


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Worker(threading.Thread):
    def __init__(self, wid, kinds, args, secret, source, results):
        super().__init__(daemon=True)
        self.wid = wid
        self.kinds = kinds
        self.args = args
        self.secret = secret
        self.source = source
        self.results = results
        self.conn = None
        self.done_ids = []  # (execution_id, tool, body, raw answer) of answered 200s
        self.seq = 0
        self.rng = random.Random(wid)
        self.fatal = None

    def connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.args.port, timeout=self.args.timeout)

    def send(self, method, path, body=b"", headers=None):
        """One exchange; reconnects once when the server had closed the connection."""
        for attempt in range(2):
            if self.conn is None:
                self.connect()
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def exec_id(self):
        self.seq += 1
        return "exec_leak_%d_%d_%d_%d" % (os.getpid(), self.args.run, self.wid, self.seq)

    def body(self, tool, params, exec_id, ts):
        return json.dumps({"tool_name": tool, "parameters": params, "execution_id": exec_id,
                           "room_id": "room_leak", "assistant_id": "asst_leak",
                           "timestamp": iso(ts)}).encode()

    def signed(self, tool, params, secret=None, ts=None, exec_id=None, raw=None):
        ts = time.time() if ts is None else ts
        exec_id = exec_id or self.exec_id()
        body = raw if raw is not None else self.body(tool, params, exec_id, ts)
        mac = hmac.new((secret or self.secret).encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json",
                   "X-Interactor-Signature": "sha256=" + mac,
                   "X-Interactor-Timestamp": iso(ts),
                   "X-Interactor-Request-Id": exec_id}
        return exec_id, body, headers

    def one(self, kind):
        src = self.source
        rng = self.rng
        if kind == "healthz":
            return self.send("GET", "/healthz")[0], None
        if kind == "query_ok":
            q = rng.choice([
                ("SELECT * FROM orders WHERE customer_id = $1", [rng.randint(1, 60)]),
                ("SELECT id, name, country FROM customers WHERE country = $1 LIMIT $2",
                 [rng.choice(["DE", "FR", "US", "GB"]), rng.randint(1, 20)]),
                ("SELECT * FROM order_totals ORDER BY total DESC LIMIT 50", []),
                ("SELECT * FROM customers", []),  # hidden column masked
                ("SELECT p.name, count(*) AS n FROM order_items i JOIN products p "
                 "ON p.id = i.product_id GROUP BY p.id ORDER BY n DESC", []),
            ])
            params = {"source": src, "query": q[0], "parameters": q[1]}
            if rng.random() < 0.3:
                params["max_rows"] = rng.randint(1, 5)  # truncated answers
            eid, body, hdr = self.signed("run_query", params)
            st, data = self.send("POST", "/v1/tools/run_query", body, hdr)
            if st == 200:
                self.done_ids.append((eid, "run_query", body, data))
            return st, None
        if kind == "query_rejected":
            params = {"source": src, "query": rng.choice(REJECTED), "parameters": [1]}
        elif kind == "query_db_error":
            params = {"source": src, "query": "SELECT no_such_column FROM orders WHERE id = $1",
                      "parameters": [1]}
        elif kind == "query_bad_params":
            params = {"source": src, "query": "SELECT 1", "parameters": [{"nested": 1}]}
        elif kind == "describe_all":
            params = {"source": src}
        elif kind == "describe_some":
            params = {"source": src, "tables": ["customers", "orders", "no_such_table"]}
        elif kind == "list_sources":
            params = {}
        if kind.startswith("query_"):
            eid, body, hdr = self.signed("run_query", params)
            return self.send("POST", "/v1/tools/run_query", body, hdr)[0], None
        if kind in ("describe_all", "describe_some", "list_sources"):
            tool = "list_data_sources" if kind == "list_sources" else "describe_schema"
            eid, body, hdr = self.signed(tool, params)
            st, data = self.send("POST", "/v1/tools/" + tool, body, hdr)
            if st == 200:
                self.done_ids.append((eid, tool, body, data))
            return st, None
        if kind == "replay":
            if not self.done_ids:
                return self.one("query_ok")
            eid, tool, body, first = rng.choice(self.done_ids)
            ts = time.time()
            mac = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            hdr = {"Content-Type": "application/json", "X-Interactor-Signature": "sha256=" + mac,
                   "X-Interactor-Timestamp": iso(ts), "X-Interactor-Request-Id": eid}
            st, data = self.send("POST", "/v1/tools/" + tool, body, hdr)
            return st, (None if st != 200 or data == first else "replay answer differs")
        if kind == "bad_signature":
            eid, body, hdr = self.signed("run_query", {"source": src, "query": "SELECT 1"},
                                         secret="wrong-secret-0123456789abcdef")
            return self.send("POST", "/v1/tools/run_query", body, hdr)[0], None
        if kind == "stale_timestamp":
            eid, body, hdr = self.signed("list_data_sources", {}, ts=time.time() - 3600)
            return self.send("POST", "/v1/tools/list_data_sources", body, hdr)[0], None
        if kind == "no_signature":
            body = self.body("list_data_sources", {}, self.exec_id(), time.time())
            return self.send("POST", "/v1/tools/list_data_sources", body,
                             {"Content-Type": "application/json"})[0], None
        if kind == "malformed_json":
            raw = rng.choice([b"{", b"[]", b"{\"tool_name\":\"run_query\",", b"\xff\xfe",
                              b"{\"tool_name\":\"run_query\",\"parameters\":{}}"])
            eid, body, hdr = self.signed("run_query", None, raw=raw)
            return self.send("POST", "/v1/tools/run_query", body, hdr)[0], None
        if kind == "unknown_tool":
            eid, body, hdr = self.signed("drop_everything", {})
            return self.send("POST", "/v1/tools/drop_everything", body, hdr)[0], None
        if kind == "oversize":
            params = {"source": src, "query": "SELECT $1", "parameters": ["x" * (200 * 1024)]}
            eid, body, hdr = self.signed("run_query", params)
            return self.send("POST", "/v1/tools/run_query", body, hdr)[0], None
        raise AssertionError("unknown kind " + kind)

    def run(self):
        for kind in self.kinds:
            try:
                status, note = self.one(kind)
            except Exception as e:  # noqa: BLE001 - count and go on
                status, note = -1, "%s: %s" % (type(e).__name__, e)
            self.results.append((kind, status, note))
        if self.conn is not None:
            self.conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source", default="demo")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--run", type=int, default=0, help="distinguishes execution_ids between runs")
    p.add_argument("--secret-env", default="INTERACTOR_CALLBACK_SECRET")
    args = p.parse_args()
    secret = os.environ.get(args.secret_env)
    if not secret:
        print("leakmix: environment variable %s is not set" % args.secret_env, file=sys.stderr)
        return 1
    try:
        c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
        c.request("GET", "/healthz")
        c.getresponse().read()
        c.close()
    except OSError as e:
        print("leakmix: cannot reach 127.0.0.1:%d: %s" % (args.port, e), file=sys.stderr)
        return 1

    expected = {k: s for k, _, s in MIX}
    total_share = sum(n for _, n, _ in MIX)
    kinds = []
    for k, n, _ in MIX:
        kinds += [k] * (n * args.requests // total_share)
    kinds += ["query_ok"] * (args.requests - len(kinds))
    random.Random(args.run).shuffle(kinds)
    results = []
    workers = [Worker(i, kinds[i::args.workers], args, secret, args.source, results)
               for i in range(args.workers)]
    t0 = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.time() - t0

    by_kind = {}
    unexpected = {}
    for kind, status, note in results:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if status != expected[kind] or note:
            key = (kind, status, note)
            unexpected[key] = unexpected.get(key, 0) + 1
    n_unexp = sum(unexpected.values())
    print("leakmix sent=%d seconds=%.1f unexpected=%d %s" % (
        len(results), elapsed, n_unexp,
        " ".join("%s=%d" % (k, by_kind.get(k, 0)) for k, _, _ in MIX)))
    for (kind, status, note), n in sorted(unexpected.items(), key=lambda kv: -kv[1]):
        print("leakmix unexpected kind=%s expected=%d got=%s count=%d%s" % (
            kind, expected[kind], status, n, (" note=" + note) if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
