"""The connector facing a hostile internet: HTTPS with TLS 1.2+ only, allow_from closing
connections from other networks before anything is read, and 500 slow connections that
send half a header from one address while signed calls from another keep answering 200.
Also: the warning for plain HTTP on a non-loopback address, and a certificate that does
not load."""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, SECRET_OLD, Daemon, Runner, expect, free_port, parse_args  # noqa: E402


def base_config(args, server):
    return f"""
server: {{ {server} }}
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ path: "@WORKDIR@/state.db" }}
log: {{ level: info, format: json }}
sources:
  - name: demo
    driver: sqlite
    dsn: "{args.demo_db}"
"""


def make_certs(d):
    """A CA and a certificate for 127.0.0.1 signed by it; returns (ca, cert, key)."""
    def run(*cmd):
        subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=edge test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return [os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key")]


def signed_ok(d, conn=None):
    s, _, raw, body = d.call("run_query", {"source": "demo", "query": "SELECT 1 AS one"}, conn=conn)
    expect(s == 200 and body["result"]["rows"] == [[1]], "%s %s" % (s, raw[:200]))


def test_https(args, tmp):
    ca, cert, key = make_certs(tmp)
    ctx = ssl.create_default_context(cafile=ca)
    d = Daemon(args, base_config(args, f'tls: {{ cert: "{cert}", key: "{key}" }}'),
               ssl_context=ctx).start()
    try:
        conn = d.connect()
        signed_ok(d, conn)
        version = conn.sock.version()
        expect(version in ("TLSv1.2", "TLSv1.3"), version)
        conn.close()
        # a client that only speaks TLS 1.1 gets no session
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(ca)
        try:
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
                try:
                    with old.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        raise AssertionError("TLS 1.1 accepted: " + str(tls.version()))
                except ssl.SSLError:
                    pass
        except (ValueError, ssl.SSLError):
            pass  # this OpenSSL cannot even offer TLS 1.1: nothing to try
        # plain HTTP to the HTTPS port gets no answer
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = raw.recv(100)
            except OSError:
                data = b""
            expect(not data.startswith(b"HTTP/1.1 200"), data)
        expect("HTTPS" in d.log_text() and "plain HTTP" not in d.log_text(), d.log_text()[-500:])
    finally:
        d.stop()


def test_bad_certificate(args, tmp):
    bogus = os.path.join(tmp, "bogus.pem")
    with open(bogus, "w") as f:
        f.write("not a certificate\n")
    d = Daemon(args, base_config(args, f'tls: {{ cert: "{bogus}", key: "{bogus}" }}'))
    try:
        d.start()
        raise AssertionError("started with a bogus certificate")
    except AssertionError as e:
        expect("not PEM" in str(e) and "bogus.pem" in str(e), str(e)[-400:])
    # only one of the two is a configuration error, named with its key
    p = subprocess.run([args.binary, "check-config", "--config", d.config_path],
                       capture_output=True, env=d.env, timeout=60)
    expect(p.returncode == 0, p.stderr)
    half = os.path.join(tmp, "half.yaml")
    with open(half, "w") as f:
        f.write(base_config(args, f'tls: {{ cert: "{bogus}" }}').replace("@WORKDIR@", tmp))
    p = subprocess.run([args.binary, "check-config", "--config", half], capture_output=True,
                       env=d.env, timeout=60)
    err = p.stderr.decode()
    expect(p.returncode != 0 and "server.tls.key" in err and "both" in err, err)


def test_allow_from(args):
    d = Daemon(args, base_config(args, 'allow_from: ["127.0.0.1/32", "127.0.0.3"]')).start()
    try:
        signed_ok(d)  # 127.0.0.1
        signed_ok(d, d.connect(source_address=("127.0.0.3", 0)))
        try:
            conn = d.connect(timeout=10, source_address=("127.0.0.2", 0))
            s, _, raw, _ = d.call("list_data_sources", {}, conn=conn)
            raise AssertionError("127.0.0.2 was answered: %s %s" % (s, raw[:100]))
        except (ConnectionError, OSError) as e:
            if isinstance(e, AssertionError):
                raise
    finally:
        d.stop()


def test_slow_connections_from_one_address(args):
    d = Daemon(args, base_config(args, "max_connections: 64, max_connections_per_address: 16, "
                                       "request_timeout: 3")).start()
    socks = []
    stop = threading.Event()
    opened = {"n": 0, "refused": 0}

    def attacker():
        # 500 connections from 127.0.0.2, each with half a header, re-opened as they close
        while not stop.is_set() and opened["n"] < 2000:
            try:
                s = socket.create_connection(("127.0.0.1", d.port), timeout=5,
                                             source_address=("127.0.0.2", 0))
                s.sendall(b"POST /v1/tools/run_query HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)
                opened["n"] += 1
            except OSError:
                opened["refused"] += 1
            if len(socks) >= 500:
                time.sleep(0.05)
                live = []
                for s in socks:
                    try:
                        s.setblocking(False)
                        if s.recv(1) == b"":
                            s.close()
                            continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        continue
                    live.append(s)
                socks[:] = live
    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        t0 = time.time()
        for _ in range(20):
            signed_ok(d)
        expect(time.time() - t0 < 10, "20 calls took %.1f s" % (time.time() - t0))
        # the slow ones are closed after request_timeout (3 s) of silence
        probe = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                         source_address=("127.0.0.4", 0))
        probe.sendall(b"POST /v1/tools/run_query HTTP/1.1\r\nHost: x\r\n")
        t1 = time.time()
        probe.settimeout(10)
        try:
            data = probe.recv(100)
        except OSError:
            data = b""
        waited = time.time() - t1
        probe.close()
        expect(data == b"" or data.startswith(b"HTTP/1.1 408"), data)
        expect(2.0 <= waited < 8, "a silent connection was closed after %.1f s" % waited)
        signed_ok(d)
    finally:
        stop.set()
        t.join(timeout=30)
        for s in socks:
            s.close()
        d.stop()
    expect(opened["n"] >= 100, opened)


def test_plain_http_off_loopback_warns(args, tmp):
    cfg = os.path.join(tmp, "open.yaml")
    with open(cfg, "w") as f:
        f.write(base_config(args, "").replace("@WORKDIR@", tmp))
    port = free_port()
    log = open(os.path.join(tmp, "open.log"), "wb")
    env = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
    p = subprocess.Popen([args.binary, "serve", "--config", cfg, "--listen", "0.0.0.0:%d" % port],
                         stdout=log, stderr=log, env=env)
    try:
        deadline = time.time() + 20
        text = ""
        while time.time() < deadline and "listening on" not in text:
            time.sleep(0.1)
            with open(os.path.join(tmp, "open.log")) as f:
                text = f.read()
        expect("serving plain HTTP on 0.0.0.0" in text, text[-600:])
    finally:
        p.terminate()
        p.wait(timeout=40)
        log.close()


def main():
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="cn-e2e-edge-")
    r = Runner()
    r.run("test_https", test_https, args, tmp)
    r.run("test_bad_certificate", test_bad_certificate, args, tmp)
    r.run("test_allow_from", test_allow_from, args)
    r.run("test_slow_connections_from_one_address", test_slow_connections_from_one_address, args)
    r.run("test_plain_http_off_loopback_warns", test_plain_http_off_loopback_warns, args, tmp)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
