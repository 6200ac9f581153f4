"""Shared pieces of the end-to-end tests: start the daemon on a free port
with a config of the test's own, and send callbacks signed the way
Interactor signs them (HMAC-SHA256 of the raw body, ISO 8601 timestamp)."""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

SECRET = "e2e-secret-0123456789abcdef-not-real"
SECRET_OLD = "e2e-old-secret-fedcba9876543210-xx"


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--demo-db", required=True)
    p.add_argument("--source-dir", required=True)
    args = p.parse_args()
    for name in ("binary", "demo_db", "source_dir"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def config_text(args, workdir, extra_source="", limits=None):
    limits = limits or {"max_rows": 1000, "max_result_bytes": 60000, "timeout_ms": 1500}
    lim = ", ".join("%s: %d" % kv for kv in limits.items())
    return f"""
server: {{ listen: "127.0.0.1:1", max_connections: 64 }}
auth:
  callback_secrets: ["${{E2E_SECRET}}", "${{E2E_SECRET_OLD}}"]
  timestamp_tolerance: 300
state: {{ path: "{workdir}/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    description: "Demo sales database"
    mappings: "{args.source_dir}/conf/mappings/demo.yaml"
    pool: {{ size: 4 }}
    limits: {{ {lim} }}
  - name: capped
    driver: sqlite
    dsn: "{args.demo_db}"
    mappings: "{args.source_dir}/conf/mappings/demo.yaml"
    limits: {{ max_rows: 1000, max_result_bytes: 2048, timeout_ms: 1500 }}
  - name: no_adhoc
    driver: sqlite
    dsn: "{args.demo_db}"
    run_query: false
{extra_source}
"""


class Daemon:
    """The connector as a child process, on a free port."""

    def __init__(self, args, config, env_extra=None, ssl_context=None):
        self.args = args
        self.ssl_context = ssl_context  # set: the daemon speaks HTTPS
        self.workdir = tempfile.mkdtemp(prefix="cn-e2e-")
        self.config_path = os.path.join(self.workdir, "connector.yaml")
        self.port = free_port()
        with open(self.config_path, "w") as f:
            f.write(config.replace("@WORKDIR@", self.workdir).replace("@PORT@", str(self.port)))
        self.env = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
        self.env.update(env_extra or {})
        self.log_path = os.path.join(self.workdir, "connector.log")
        self.proc = None

    def start(self):
        return self.spawn().wait_healthy()

    def spawn(self):
        """Start the process without waiting for it (several daemons starting at once)."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.args.binary, "serve", "--config", self.config_path,
             "--listen", "127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=self.log, env=self.env)
        return self

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                status, _, _ = self.request("GET", "/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("daemon did not answer /healthz within %d s:\n%s" %
                             (timeout, self.log_text()))

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Stop the daemon; with SIGTERM it must exit 0 with no sanitizer report (the ASan
        build runs these tests too: a leak or an error in the daemon fails the test)."""
        stopped_here = False
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
            stopped_here = True
        if self.proc and not self.log.closed:
            self.log.close()
            text = self.log_text()
            for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if mark in text:
                    i = text.index(mark)
                    raise AssertionError("the daemon's log holds a sanitizer report:\n" +
                                         text[max(0, i - 200):i + 3000])
            if stopped_here and sig == signal.SIGTERM and self.proc.returncode != 0:
                raise AssertionError("the daemon exited %s after SIGTERM:\n%s" %
                                     (self.proc.returncode, text[-3000:]))
        return self.proc.returncode if self.proc else None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def connect(self, timeout=60, source_address=None):
        """A keep-alive connection to pass to request() and call() as conn."""
        if self.ssl_context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl_context,
                                               source_address=source_address)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=source_address)

    def request(self, method, path, body=b"", headers=None, timeout=60, conn=None):
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            if conn is None:
                c.close()

    def call(self, tool, params, exec_id=None, secret=SECRET, ts=None, body=None,
             path_tool=None, tamper=None, headers_override=None, conn=None):
        """A signed callback. Returns (status, headers, raw body bytes, parsed JSON or None)."""
        exec_id = exec_id or "exec_%d_%d" % (os.getpid(), time.time_ns())
        ts = time.time() if ts is None else ts
        if body is None:
            body = json.dumps({"tool_name": tool, "parameters": params, "execution_id": exec_id,
                               "room_id": "room_e2e", "assistant_id": "asst_e2e",
                               "timestamp": iso(ts)}).encode()
        headers = {"Content-Type": "application/json",
                   "X-Interactor-Signature": sign(secret, body),
                   "X-Interactor-Timestamp": iso(ts),
                   "X-Interactor-Request-Id": exec_id}
        if tamper:
            body = tamper(body)
        if headers_override is not None:
            headers = headers_override(headers)
        status, hdrs, raw = self.request("POST", "/v1/tools/" + (path_tool or tool), body, headers,
                                         conn=conn)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return status, hdrs, raw, parsed


def count_query(n):
    """A SQLite query whose time grows with n: a recursive count, nothing to cut it short."""
    return ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
            "SELECT count(*) AS c FROM n" % n)


def count_for(d, source, seconds, secret=SECRET):
    """The n for which count_query(n) runs about this long on this machine and build (an
    ASan build is many times slower): timed once on 300,000 rows through the daemon."""
    s, _, raw, body = d.call("run_query", {"source": source, "query": count_query(300000)},
                             secret=secret)
    if s != 200:
        raise AssertionError("calibration: %d %s" % (s, raw[:200]))
    ms = max(body["result"]["execution_time_ms"], 1)
    return max(int(300000 * seconds * 1000 / ms), 300000)


class Runner:
    """A tiny test runner: each test is a function; prints 'N passed, N failed'."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn, *a):
        try:
            fn(*a)
            self.passed += 1
            print("PASS", name, flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print("FAIL", name, "-", repr(e), flush=True)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 0 if self.failed == 0 and self.passed > 0 else 1


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
