#!/usr/bin/python3
"""A fake Interactor platform for the connector's tests: the parts of the
platform's API the connector uses, over verified TLS, plus a control API
under /_fake/ for the tests. Standard library only (Debian's python3).

Platform (as ../../shared/interactor-contract.md section 3 and the
platform's guide describe it; answers wrap payloads in {"data": ...},
errors are {"error": {"code", "message"}}, every answer carries
X-Request-Id, X-Trace-Id and X-RateLimit-*):

  POST   /auth/api/v1/oauth/token          client credentials -> a Bearer token
                                           that expires after --token-ttl s
  GET    /api/v1/tools?limit=&cursor=      {"tools": [...], "has_more", "next_cursor"}
  POST   /api/v1/tools                     create (name, description, parameters,
                                           callback_url, callback_secret)
  GET    /api/v1/tools/{id}
  PUT    /api/v1/tools/{id}                update description, parameters, callback_url
  DELETE /api/v1/tools/{id}
  PATCH  /api/v1/tools/{id}/secrets        {"add_secret", "deprecate_old_after_hours"}
                                           (dual-secret mode) or {"remove_deprecated": true}
  PATCH  /api/v1/data-sources/{id}/semantic-mappings   {"mappings": {...}}

Control (for the tests, same server):

  GET  /_fake/ping                  200
  POST /_fake/reset                 forget tools, tokens, mappings, log, faults
  POST /_fake/config                {"token_ttl", "page_size", "delay_ms", "sign_mode"}
  POST /_fake/faults                {"status": 401|429|500|..., "count": N, "retry_after": S,
                                     "path": "/api/v1/tools" (prefix), "method": "GET"}: the
                                    next N matching calls answer that status
  POST /_fake/revoke-tokens         every token issued so far stops working
  POST /_fake/data-sources          {"id": "ds_x"}: a data source that takes mappings
  GET  /_fake/state                 tools (with their secrets), data sources, the tokens issued
  GET  /_fake/log                   every platform request: method, path, status, the
                                    X-Client-Request-Id, whether a token came, the body
  POST /_fake/invoke                {"tool": NAME | null (every tool), "parameters": {...}
                                     or {"by_tool": {NAME: {...}}}, "sign_with": "active" |
                                     "deprecated" | "any"}: calls each tool's callback_url
                                    signed exactly as Interactor does and reports the statuses
  POST /_fake/load/start            {"tool", "parameters", "threads", "interval_ms"}: keep
                                    calling that tool, signing with any valid secret
  POST /_fake/load/stop             stop, report {"count", "statuses", "failures", "by_secret"}

Signing (contract section 1): X-Interactor-Signature: sha256=<hex HMAC-SHA256 of the raw
body keyed with the tool's callback secret>, X-Interactor-Timestamp (ISO 8601),
X-Interactor-Request-Id = execution_id, Content-Type: application/json. While a tool has a
deprecated secret inside its window (dual-secret mode), the platform may sign with either:
sign_mode "alternate" (default) switches between them call by call.
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse

LOCK = threading.RLock()


def iso(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, clients, token_ttl):
        self.clients = dict(clients)
        self.default_ttl = token_ttl
        self.issued = []  # every token ever issued, kept across resets: the tests grep for them
        self.reset()

    def reset(self):
        self.token_ttl = self.default_ttl
        self.page_size = 100
        self.delay_ms = 0
        self.sign_mode = "alternate"
        self.tokens = {}
        self.tokens_issued = 0
        self.tools = {}
        self.next_id = 1
        self.data_sources = {}
        self.log = []
        self.faults = []
        self.request_no = 0
        self.sign_turn = 0
        self.load = None


STATE = None


def public_tool(t):
    return {k: t[k] for k in ("id", "name", "description", "parameters", "callback_url", "created_at",
                              "updated_at")}


def valid_secrets(tool, now):
    """The secrets the platform may sign with now: the active one, and deprecated ones inside
    their window."""
    return [s for s in tool["secrets"]
            if s["state"] == "active" or (s["state"] == "deprecated" and s["until"] > now)]


def sign_body(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def call_tool(tool, params, sign_with="any"):
    """POST the tool's callback_url as Interactor does. Returns a result dict."""
    now = time.time()
    with LOCK:
        choices = valid_secrets(tool, now)
        if sign_with == "active":
            choices = [s for s in choices if s["state"] == "active"]
        elif sign_with == "deprecated":
            choices = [s for s in choices if s["state"] == "deprecated"]
        elif STATE.sign_mode == "new":
            choices = [s for s in choices if s["state"] == "active"] or choices
        elif STATE.sign_mode == "old":
            choices = [s for s in choices if s["state"] == "deprecated"] or choices
        if not choices:
            return {"tool": tool["name"], "status": None, "error": "no secret to sign with"}
        STATE.sign_turn += 1
        chosen = choices[STATE.sign_turn % len(choices)]
    exec_id = "exec_%s" % secrets.token_hex(12)
    ts = iso(now)
    body = json.dumps({"tool_name": tool["name"], "parameters": params, "execution_id": exec_id,
                       "room_id": "room_fake", "assistant_id": "asst_fake", "timestamp": ts}).encode()
    headers = {"Content-Type": "application/json",
               "X-Interactor-Signature": sign_body(chosen["secret"], body),
               "X-Interactor-Timestamp": ts,
               "X-Interactor-Request-Id": exec_id}
    url = urllib.parse.urlsplit(tool["callback_url"])
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    result = {"tool": tool["name"], "execution_id": exec_id, "secret": chosen["state"]}
    try:
        conn = conn_cls(url.hostname, url.port, timeout=35)
        conn.request("POST", url.path or "/", body=body, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        result["status"] = r.status
        try:
            result["body"] = json.loads(raw)
        except ValueError:
            result["body"] = raw.decode(errors="replace")
    except OSError as e:
        result["status"] = None
        result["error"] = repr(e)
    return result


class Load:
    def __init__(self, tool_name, params, threads, interval_ms):
        self.tool_name = tool_name
        self.params = params
        self.interval = interval_ms / 1000.0
        self.stop_event = threading.Event()
        self.count = 0
        self.statuses = {}
        self.by_secret = {}
        self.failures = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop_event.is_set():
            with LOCK:
                tool = next((t for t in STATE.tools.values() if t["name"] == self.tool_name), None)
            if tool is None:
                r = {"status": None, "error": "no tool %s" % self.tool_name}
            else:
                r = call_tool(tool, self.params)
            with LOCK:
                self.count += 1
                key = str(r.get("status"))
                self.statuses[key] = self.statuses.get(key, 0) + 1
                if r.get("secret"):
                    self.by_secret[r["secret"]] = self.by_secret.get(r["secret"], 0) + 1
                if r.get("status") != 200 and len(self.failures) < 50:
                    self.failures.append(r)
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
        return {"count": self.count, "statuses": self.statuses, "failures": self.failures,
                "by_secret": self.by_secret}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-interactor/1"

    def log_message(self, fmt, *args):  # quiet: the tests read /_fake/log
        pass

    # ---- plumbing ----

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None, raw
        try:
            return json.loads(raw), raw
        except ValueError:
            return ValueError, raw

    def send(self, status, payload=None, headers=None, wrap=True):
        with LOCK:
            STATE.request_no += 1
            rid = "req_%06d" % STATE.request_no
        if payload is None:
            data = b""
        else:
            data = json.dumps({"data": payload} if wrap and status < 400 else payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", rid)
        self.send_header("X-Trace-Id", "trace_" + rid[4:])
        self.send_header("X-RateLimit-Limit", "100")
        self.send_header("X-RateLimit-Remaining", "0" if status == 429 else "95")
        self.send_header("X-RateLimit-Reset", str(int(time.time()) + 60))
        self.send_header("X-RateLimit-Resource", "tools" if "/tools" in self.path else "api")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)
        return status

    def error(self, status, code, message, headers=None, extra=None):
        e = {"code": code, "message": message}
        e.update(extra or {})
        return self.send(status, {"error": e}, headers=headers)

    def record(self, status, body, authed):
        if self.path.startswith("/_fake/"):
            return
        with LOCK:
            STATE.log.append({"time": time.time(), "method": self.command, "path": self.path,
                              "status": status,
                              "client_request_id": self.headers.get("X-Client-Request-Id"),
                              "user_agent": self.headers.get("User-Agent"),
                              "bearer": authed, "body": body})

    def fault(self):
        with LOCK:
            for f in STATE.faults:
                if f["count"] <= 0:
                    continue
                if f.get("method") and f["method"] != self.command:
                    continue
                if f.get("path") and not self.path.startswith(f["path"]):
                    continue
                f["count"] -= 1
                return dict(f)
        return None

    def handle_any(self):
        body, raw = self.body_json()
        if self.path.startswith("/_fake/"):
            return self.control(body)
        status = 500
        authed = None
        try:
            f = self.fault()
            if f:
                st = f["status"]
                if st == 429:
                    ra = f.get("retry_after", 1)
                    status = self.error(429, "rate_limit_exceeded", "Rate limit exceeded for tools",
                                        headers={"Retry-After": str(ra)}, extra={"retry_after": ra})
                elif st == 401:
                    status = self.error(401, "unauthorized", "invalid or expired token")
                else:
                    status = self.error(st, "internal_error" if st >= 500 else "error", "injected fault")
                return
            if body is ValueError:
                status = self.error(400, "invalid_json", "the body is not JSON")
                return
            if self.path.startswith("/auth/api/v1/oauth/token"):
                status = self.token(body)
                return
            if not self.path.startswith("/api/v1/"):
                status = self.error(404, "not_found", "no such endpoint")
                return
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            authed = token is not None
            with LOCK:
                exp = STATE.tokens.get(token)
            if exp is None or exp <= time.time():
                status = self.error(401, "token_expired" if exp else "unauthorized",
                                    "the access token has expired" if exp else "no valid access token")
                return
            if STATE.delay_ms:
                time.sleep(STATE.delay_ms / 1000.0)
            status = self.api(body)
        finally:
            logged = body if body is not ValueError else raw.decode(errors="replace")
            self.record(status, logged, authed)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    # ---- auth ----

    def token(self, body):
        if self.command != "POST":
            return self.error(405, "method_not_allowed", "POST a client credentials grant")
        if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            return self.error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        cid, csecret = body.get("client_id"), body.get("client_secret")
        if not isinstance(cid, str) or STATE.clients.get(cid) != csecret:
            return self.error(401, "invalid_client", "unknown client or wrong secret")
        token = "tok_" + secrets.token_urlsafe(24)
        with LOCK:
            STATE.tokens[token] = time.time() + STATE.token_ttl
            STATE.tokens_issued += 1
            STATE.issued.append(token)
            ttl = STATE.token_ttl
        return self.send(200, {"access_token": token, "token_type": "Bearer", "expires_in": ttl})

    # ---- the API ----

    def api(self, body):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p][2:]  # after api/v1
        q = urllib.parse.parse_qs(url.query)
        if parts == ["tools"] and self.command == "GET":
            return self.list_tools(q)
        if parts == ["tools"] and self.command == "POST":
            return self.create_tool(body)
        if len(parts) == 2 and parts[0] == "tools":
            with LOCK:
                tool = STATE.tools.get(parts[1])
            if not tool:
                return self.error(404, "tool_not_found", "no tool %s" % parts[1])
            if self.command == "GET":
                return self.send(200, public_tool(tool))
            if self.command == "PUT":
                return self.update_tool(tool, body)
            if self.command == "DELETE":
                with LOCK:
                    STATE.tools.pop(tool["id"], None)
                return self.send(200, {"id": tool["id"], "deleted": True})
        if len(parts) == 3 and parts[0] == "tools" and parts[2] == "secrets" and self.command == "PATCH":
            with LOCK:
                tool = STATE.tools.get(parts[1])
            if not tool:
                return self.error(404, "tool_not_found", "no tool %s" % parts[1])
            return self.tool_secrets(tool, body)
        if (len(parts) == 3 and parts[0] == "data-sources" and parts[2] == "semantic-mappings"
                and self.command == "PATCH"):
            return self.mappings(parts[1], body)
        return self.error(404, "not_found", "no such endpoint")

    def list_tools(self, q):
        try:
            limit = max(1, min(int(q.get("limit", ["100"])[0]), 100))
        except ValueError:
            return self.error(400, "invalid_limit", "limit must be a number")
        with LOCK:
            limit = min(limit, STATE.page_size)
            tools = sorted(STATE.tools.values(), key=lambda t: int(t["id"][5:]))
        start = 0
        if "cursor" in q:
            try:
                start = int(q["cursor"][0].split("_", 1)[1])
            except (ValueError, IndexError):
                return self.error(400, "invalid_cursor", "bad cursor")
        page = tools[start:start + limit]
        more = start + limit < len(tools)
        return self.send(200, {"tools": [public_tool(t) for t in page], "has_more": more,
                               "next_cursor": "cur_%d" % (start + limit) if more else None})

    def check_tool_fields(self, body, creating):
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        need = ("name", "description", "parameters", "callback_url", "callback_secret") if creating else ()
        for k in need:
            if k not in body:
                return "%s is required" % k
        if "name" in body and (not isinstance(body["name"], str) or not body["name"]
                               or len(body["name"]) > 64):
            return "name must be a string of 1 to 64 characters"
        if "description" in body and not isinstance(body["description"], str):
            return "description must be a string"
        if "parameters" in body and (not isinstance(body["parameters"], dict)
                                     or body["parameters"].get("type") != "object"):
            return "parameters must be a JSON Schema object"
        if "callback_url" in body and (not isinstance(body["callback_url"], str)
                                       or not body["callback_url"].startswith(("http://", "https://"))):
            return "callback_url must be an http(s) URL"
        if "callback_secret" in body and (not isinstance(body["callback_secret"], str)
                                          or len(body["callback_secret"]) < 16):
            return "callback_secret must be at least 16 characters"
        unknown = set(body) - {"name", "description", "parameters", "callback_url", "callback_secret"}
        if unknown:
            return "unknown fields: %s" % ", ".join(sorted(unknown))
        return None

    def create_tool(self, body):
        why = self.check_tool_fields(body, True)
        if why:
            return self.error(422, "validation_error", why)
        with LOCK:
            if any(t["name"] == body["name"] for t in STATE.tools.values()):
                return self.error(409, "tool_exists", "a tool named %s exists" % body["name"])
            tid = "tool_%d" % STATE.next_id
            STATE.next_id += 1
            now = iso()
            tool = {"id": tid, "name": body["name"], "description": body["description"],
                    "parameters": body["parameters"], "callback_url": body["callback_url"],
                    "created_at": now, "updated_at": now,
                    "secrets": [{"secret": body["callback_secret"], "state": "active", "until": 0}]}
            STATE.tools[tid] = tool
        return self.send(201, public_tool(tool))

    def update_tool(self, tool, body):
        why = self.check_tool_fields(body, False)
        if why:
            return self.error(422, "validation_error", why)
        if "callback_secret" in body:
            return self.error(422, "validation_error", "rotate secrets with PATCH /tools/{id}/secrets")
        with LOCK:
            for k in ("name", "description", "parameters", "callback_url"):
                if k in body:
                    tool[k] = body[k]
            tool["updated_at"] = iso()
        return self.send(200, public_tool(tool))

    def tool_secrets(self, tool, body):
        if not isinstance(body, dict):
            return self.error(422, "validation_error", "the body must be a JSON object")
        now = time.time()
        with LOCK:
            if "add_secret" in body:
                new = body["add_secret"]
                hours = body.get("deprecate_old_after_hours", 24)
                if not isinstance(new, str) or len(new) < 16:
                    return self.error(422, "validation_error", "add_secret must be at least 16 characters")
                if not isinstance(hours, (int, float)) or hours <= 0:
                    return self.error(422, "validation_error", "deprecate_old_after_hours must be positive")
                if any(s["secret"] == new for s in tool["secrets"]):
                    return self.error(409, "secret_exists", "this secret is already set")
                for s in tool["secrets"]:
                    if s["state"] == "active":
                        s["state"] = "deprecated"
                        s["until"] = now + hours * 3600
                tool["secrets"].append({"secret": new, "state": "active", "until": 0})
            elif body.get("remove_deprecated") is True:
                tool["secrets"] = [s for s in tool["secrets"] if s["state"] == "active"]
            else:
                return self.error(422, "validation_error", "give add_secret or remove_deprecated")
            states = [s["state"] for s in tool["secrets"]]
        return self.send(200, {"id": tool["id"], "secrets": states})

    def mappings(self, ds, body):
        with LOCK:
            known = ds in STATE.data_sources
        if not known:
            return self.error(404, "data_source_not_found", "no data source %s" % ds)
        if not isinstance(body, dict) or not isinstance(body.get("mappings"), dict):
            return self.error(422, "validation_error", "mappings must be an object")
        for key, m in body["mappings"].items():
            if not isinstance(m, dict) or set(m) - {"description", "synonyms"}:
                return self.error(422, "validation_error", "mapping %s: description and synonyms only" % key)
            if "description" in m and not isinstance(m["description"], str):
                return self.error(422, "validation_error", "mapping %s: description must be a string" % key)
            if "synonyms" in m and (not isinstance(m["synonyms"], list)
                                    or not all(isinstance(x, str) for x in m["synonyms"])):
                return self.error(422, "validation_error", "mapping %s: synonyms must be strings" % key)
        with LOCK:
            STATE.data_sources[ds]["mappings"] = body["mappings"]
            STATE.data_sources[ds]["pushes"] += 1
        return self.send(200, {"id": ds, "mappings": len(body["mappings"])})

    # ---- control ----

    def control(self, body):
        p = urllib.parse.urlsplit(self.path).path
        body = body if isinstance(body, dict) else {}
        if p == "/_fake/ping":
            return self.send(200, {"ok": True})
        if p == "/_fake/reset":
            with LOCK:
                if STATE.load:
                    STATE.load.stop()
                STATE.reset()
            return self.send(200, {"ok": True})
        if p == "/_fake/config":
            with LOCK:
                for k in ("token_ttl", "page_size", "delay_ms", "sign_mode"):
                    if k in body:
                        setattr(STATE, k, body[k])
            return self.send(200, {"ok": True})
        if p == "/_fake/faults":
            with LOCK:
                STATE.faults.append({"status": int(body["status"]), "count": int(body.get("count", 1)),
                                     "retry_after": body.get("retry_after", 1), "path": body.get("path"),
                                     "method": body.get("method")})
            return self.send(200, {"ok": True})
        if p == "/_fake/revoke-tokens":
            with LOCK:
                STATE.tokens.clear()
            return self.send(200, {"ok": True})
        if p == "/_fake/data-sources":
            with LOCK:
                STATE.data_sources[body["id"]] = {"mappings": None, "pushes": 0}
            return self.send(200, {"ok": True})
        if p == "/_fake/state":
            with LOCK:
                state = {"tools": list(STATE.tools.values()), "data_sources": STATE.data_sources,
                         "tokens_issued": STATE.tokens_issued, "tokens": STATE.issued}
                text = json.dumps(state)
            return self.send(200, json.loads(text))
        if p == "/_fake/log":
            with LOCK:
                text = json.dumps(STATE.log)
            return self.send(200, json.loads(text))
        if p == "/_fake/invoke":
            with LOCK:
                tools = [t for t in STATE.tools.values()
                         if body.get("tool") in (None, t["name"])]
            by_tool = (body.get("parameters") or {}).get("by_tool")
            results = []
            for t in tools:
                params = by_tool.get(t["name"], {}) if by_tool is not None else body.get("parameters", {})
                results.append(call_tool(t, params, body.get("sign_with", "any")))
            return self.send(200, {"results": results})
        if p == "/_fake/load/start":
            with LOCK:
                if STATE.load:
                    return self.error(409, "busy", "a load runs already")
                STATE.load = Load(body["tool"], body.get("parameters", {}), int(body.get("threads", 2)),
                                  int(body.get("interval_ms", 10)))
            return self.send(200, {"ok": True})
        if p == "/_fake/load/stop":
            with LOCK:
                load, STATE.load = STATE.load, None
            if not load:
                return self.error(409, "idle", "no load runs")
            return self.send(200, load.stop())
        return self.error(404, "not_found", "no such control endpoint")


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret-file", required=True,
                    help="file holding the client secret (kept off the command line)")
    ap.add_argument("--token-ttl", type=int, default=900)
    ap.add_argument("--pid-file")
    args = ap.parse_args()
    with open(args.client_secret_file) as f:
        client_secret = f.read().strip()
    STATE = State({args.client_id: client_secret}, args.token_ttl)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    try:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    except OSError as e:
        print("fake_interactor: cannot listen on port %d: %s" % (args.port, e), file=sys.stderr)
        return 2
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write("%d\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print("fake_interactor: listening on https://127.0.0.1:%d" % args.port, flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
