#!/usr/bin/env python3
"""bench/soakmix.py - a steady mix of point queries and row-capped queries for bench/soak.sh.

Sends signed run_query callbacks to a running connector at a fixed rate (--rate requests/s in
all, spread over --workers threads, 16 by default, each on its own keep-alive connection and one
request in flight) for --duration seconds; a worker that falls behind sends back to back. Each request is, at random (seeded):

  point   the spec's point query with one random id: a few rows
  capped  the spec's capped query, a result of thousands of rows, cut by a random max_rows
          (the connector stops reading at the cap: what bench/soak.sh watches)

The spec (--spec FILE, JSON) names the source and the two queries:

  {"source": "soak",
   "point":  {"query": "SELECT * FROM soak_rows WHERE id = $1", "ids": [1, 100000]},
   "capped": {"query": "SELECT * FROM soak_rows", "max_rows": [1, 50]},
   "capped_share": 0.5}

For MongoDB the queries are command documents (objects), the id bound with {"$param": 1}.
Prints one key=value line: sent, per-kind and per-status counts, capped answers that were not
marked truncated, the rate reached. Exit 0 when the server answered, 1 when it could not be
reached. The callback secret comes from the environment variable --secret-env, never printed.
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


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Worker(threading.Thread):
    def __init__(self, wid, args, spec, secret, t0, stats, lock):
        super().__init__(daemon=True)
        self.wid, self.args, self.spec, self.secret = wid, args, spec, secret
        self.t0, self.stats, self.lock = t0, stats, lock
        self.rng = random.Random(args.seed * 1000 + wid)
        self.conn = None
        self.seq = 0

    def send(self, body, headers):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.args.port, timeout=60)
            try:
                self.conn.request("POST", "/v1/tools/run_query", body=body, headers=headers)
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

    def one(self):
        spec, rng = self.spec, self.rng
        capped = rng.random() < spec.get("capped_share", 0.5)
        if capped:
            lo, hi = spec["capped"]["max_rows"]
            params = {"source": spec["source"], "query": spec["capped"]["query"], "parameters": [],
                      "max_rows": rng.randint(lo, hi)}
        else:
            lo, hi = spec["point"]["ids"]
            params = {"source": spec["source"], "query": spec["point"]["query"],
                      "parameters": [rng.randint(lo, hi)]}
        self.seq += 1
        exec_id = "exec_soak_%d_%d_%d_%d" % (os.getpid(), self.args.seed, self.wid, self.seq)
        ts = time.time()
        body = json.dumps({"tool_name": "run_query", "parameters": params, "execution_id": exec_id,
                           "room_id": "room_soak", "assistant_id": "asst_soak",
                           "timestamp": iso(ts)}).encode()
        mac = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Interactor-Signature": "sha256=" + mac,
                   "X-Interactor-Timestamp": iso(ts), "X-Interactor-Request-Id": exec_id}
        try:
            status, data = self.send(body, headers)
        except Exception:  # noqa: BLE001 - counted as a transport failure
            status, data = -1, b""
        untruncated = False
        if capped and status == 200:
            try:
                untruncated = not json.loads(data)["result"]["truncated"]
            except (ValueError, KeyError, TypeError):
                untruncated = True
        return "capped" if capped else "point", status, untruncated

    def run(self):
        interval = self.args.workers / self.args.rate
        n = 0
        end = self.t0 + self.args.duration
        while True:
            due = self.t0 + (n + self.wid / self.args.workers) * interval
            if due >= end or time.time() >= end:
                break
            now = time.time()
            if due > now:
                time.sleep(due - now)
            kind, status, untruncated = self.one()
            with self.lock:
                self.stats[kind] = self.stats.get(kind, 0) + 1
                key = "status_%s" % status
                self.stats[key] = self.stats.get(key, 0) + 1
                if untruncated:
                    self.stats["capped_not_truncated"] += 1
            n += 1
        if self.conn is not None:
            self.conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--secret-env", default="INTERACTOR_CALLBACK_SECRET")
    args = p.parse_args()
    secret = os.environ.get(args.secret_env)
    if not secret:
        print("soakmix: environment variable %s is not set" % args.secret_env, file=sys.stderr)
        return 1
    with open(args.spec) as f:
        spec = json.load(f)
    try:
        c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
        c.request("GET", "/healthz")
        c.getresponse().read()
        c.close()
    except OSError as e:
        print("soakmix: cannot reach 127.0.0.1:%d: %s" % (args.port, e), file=sys.stderr)
        return 1
    stats = {"capped_not_truncated": 0}
    lock = threading.Lock()
    t0 = time.time()
    workers = [Worker(i, args, spec, secret, t0, stats, lock) for i in range(args.workers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.time() - t0
    sent = stats.get("point", 0) + stats.get("capped", 0)
    print("soakmix sent=%d seconds=%.1f rate=%.1f %s" % (
        sent, elapsed, sent / elapsed if elapsed else 0,
        " ".join("%s=%d" % (k, v) for k, v in sorted(stats.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
