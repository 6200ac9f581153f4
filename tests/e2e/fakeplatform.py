"""The fake Interactor platform from the tests' side: start it with
tests/support/fake_interactor.sh (each test file starts its own: it takes half
a second, its state is the test's alone, and ctest runs the files side by side),
drive its control API, and write connector configs that talk to it."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse

from harness import SECRET, SECRET_OLD


class FakePlatform:
    def __init__(self, source_dir, token_ttl=None):
        self.script = os.path.join(source_dir, "tests", "support", "fake_interactor.sh")
        self.dir = tempfile.mkdtemp(prefix="cn-fake-")
        os.rmdir(self.dir)  # the script makes it, mode 0700
        env = dict(os.environ)
        if token_ttl:
            env["CN_TEST_INTERACTOR_TOKEN_TTL"] = str(token_ttl)
        subprocess.run([self.script, "start", self.dir], check=True, env=env, timeout=60)
        self.env = {}
        with open(os.path.join(self.dir, "interactor.env")) as f:
            for line in f:
                k, _, v = line.strip()[len("export "):].partition("=")
                self.env[k] = v
        self.api_url = self.env["CN_TEST_INTERACTOR_URL"]
        self.auth_url = self.env["CN_TEST_INTERACTOR_AUTH_URL"]
        self.ca = self.env["CN_TEST_INTERACTOR_CA"]
        self.client_id = self.env["CN_TEST_INTERACTOR_CLIENT_ID"]
        self.client_secret = self.env["CN_TEST_INTERACTOR_CLIENT_SECRET"]
        self.port = int(self.env["CN_TEST_INTERACTOR_PORT"])
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def stop(self):
        subprocess.run([self.script, "stop", self.dir], check=False, timeout=60)

    def control(self, method, path, body=None, timeout=120):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)
        try:
            c.request(method, "/_fake/" + path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = json.loads(r.read() or b"null")
            if r.status != 200:
                raise AssertionError("fake %s %s: %s %s" % (method, path, r.status, data))
            return data["data"]
        finally:
            c.close()

    def reset(self):
        return self.control("POST", "reset", {})

    def configure(self, **kw):
        return self.control("POST", "config", kw)

    def fault(self, status, count=1, path=None, method=None, retry_after=1):
        return self.control("POST", "faults", {"status": status, "count": count, "path": path,
                                               "method": method, "retry_after": retry_after})

    def data_source(self, ds):
        return self.control("POST", "data-sources", {"id": ds})

    def state(self):
        return self.control("GET", "state")

    def log(self):
        return self.control("GET", "log")

    def tools(self):
        return {t["name"]: t for t in self.state()["tools"]}

    def invoke(self, tool=None, parameters=None, by_tool=None, sign_with="any"):
        params = {"by_tool": by_tool} if by_tool is not None else (parameters or {})
        return self.control("POST", "invoke", {"tool": tool, "parameters": params,
                                               "sign_with": sign_with})["results"]

    def load_start(self, tool, parameters=None, threads=2, interval_ms=10):
        return self.control("POST", "load/start", {"tool": tool, "parameters": parameters or {},
                                                   "threads": threads, "interval_ms": interval_ms})

    def load_stop(self):
        return self.control("POST", "load/stop", {})

    def writes(self, since=0):
        """The platform requests since log index `since` that change something."""
        return [e for e in self.log()[since:]
                if e["method"] in ("POST", "PUT", "PATCH", "DELETE") and e["path"].startswith("/api/")]


def interactor_block(fake, extra="", ca=True, secret_var="FAKE_CLIENT_SECRET"):
    lines = ["interactor:",
             '  api_url: "%s"' % fake.api_url,
             '  auth_url: "%s"' % fake.auth_url,
             '  client_id: "%s"' % fake.client_id,
             '  client_secret: "${%s}"' % secret_var]
    if ca:
        lines.append('  ca_file: "%s"' % fake.ca)
    for line in extra.splitlines():
        if line.strip():
            lines.append("  " + line.strip())
    return "\n".join(lines) + "\n"


CURATED = """
tools:
  - name: orders_by_status
    description: "Orders in one status, newest first, with their customer"
    source: demo
    statement: >-
      SELECT o.id, o.status, o.ordered_at, c.name AS customer, c.phone
      FROM orders o JOIN customers c ON c.id = o.customer_id
      WHERE o.status = $1 AND o.ordered_at >= $2 ORDER BY o.ordered_at DESC LIMIT $3
    parameters:
      - { name: status, type: string, required: true, enum: [pending, paid, shipped, delivered, cancelled],
          description: "Order status" }
      - { name: since, type: date, default: "2000-01-01", description: "Orders placed on or after this day" }
      - { name: limit, type: integer, minimum: 1, maximum: 50, default: 5 }
"""


def connector_config(args, workdir, fake, public_url="http://127.0.0.1:9", interactor_extra="",
                     tools=CURATED, ds_id="ds_demo", ca=True, extra_top="", mappings=None):
    mappings = mappings or "%s/conf/mappings/demo.yaml" % args.source_dir
    ds = 'interactor_data_source_id: "%s"' % ds_id if ds_id else ""
    return f"""
server: {{ listen: "127.0.0.1:1", public_url: "{public_url}" }}
auth:
  callback_secrets: ["${{E2E_SECRET}}", "${{E2E_SECRET_OLD}}"]
state: {{ path: "{workdir}/state.db" }}
log: {{ level: debug, format: json }}
{extra_top}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
    description: "Demo sales database"
    mappings: "{mappings}"
    {ds}
""" + (tools or "") + interactor_block(fake, interactor_extra, ca=ca)


def run_cli(args, *argv, env=None, timeout=180):
    e = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
    for k in ("https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        e.pop(k, None)
    e.update(env or {})
    start = time.time()
    p = subprocess.run([args.binary, *argv], capture_output=True, env=e, timeout=timeout)
    return (p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
            time.time() - start)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)


def parse_path(path):
    return urllib.parse.urlsplit(path).path
