"""The command line as an operator meets it: refusal to start without a good
secret, check-config, introspect, query, sign, --help."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, SECRET_OLD, Runner, config_text, expect, parse_args  # noqa: E402

ARGS = None


def run(*argv, env=None, stdin=None):
    e = dict(os.environ, E2E_SECRET=SECRET, E2E_SECRET_OLD=SECRET_OLD)
    e.update(env or {})
    p = subprocess.run([ARGS.binary, *argv], capture_output=True, env=e, input=stdin, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def write_config(text):
    d = tempfile.mkdtemp(prefix="cn-cli-")
    path = os.path.join(d, "connector.yaml")
    with open(path, "w") as f:
        f.write(text.replace("@WORKDIR@", d))
    return path


def good_config():
    return write_config(config_text(ARGS, "@WORKDIR@"))


def test_refuses_bad_secrets():
    base = config_text(ARGS, "@WORKDIR@")
    cases = [
        ('callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]', "callback_secrets: []", {}),
        ('callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]', 'callback_secrets: ["${CN_UNSET_VAR}"]', {}),
        ('callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]', 'callback_secrets: ["${SHORT}"]',
         {"SHORT": "too-short"}),
        ('callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]', 'callback_secrets: ["${PADDED}"]',
         {"PADDED": " padded-secret-0123456789 "}),
        ('callback_secrets: ["${E2E_SECRET}", "${E2E_SECRET_OLD}"]', 'callback_secrets: [""]', {}),
    ]
    for old, new, env in cases:
        path = write_config(base.replace(old, new))
        rc, out, err = run("serve", "--config", path, "--listen", "127.0.0.1:0", env=env)
        expect(rc != 0, "started with %s" % new)
        expect("callback_secrets" in err and path in err, "message lacks key or file: %s" % err)
        for v in env.values():
            expect(v.strip() not in err, "the secret was printed")


def test_check_config_redacts():
    rc, out, err = run("check-config", "--config", good_config())
    expect(rc == 0, "check-config failed: %s %s" % (out, err))
    expect(SECRET not in out + err and SECRET_OLD not in out + err, "secret printed")
    expect("<redacted>" in out, "no redaction marker")
    expect("configuration ok" in out and "source demo (sqlite): ok" in out, out)
    # least privilege: a database file this user could write is pointed out
    if os.access(ARGS.demo_db, os.W_OK):
        expect("warning: the database file %s is writable" % ARGS.demo_db in out, out)


def test_check_config_errors_name_file_and_line():
    path = write_config(config_text(ARGS, "@WORKDIR@").replace("timeout_ms: 1500", "timeout_ms: 99999", 1))
    rc, _, err = run("check-config", "--config", path)
    expect(rc == 1 and path in err and "timeout_ms" in err, err)
    path = write_config(config_text(ARGS, "@WORKDIR@").replace("driver: sqlite", "driver: nosuch", 1))
    rc, _, err = run("check-config", "--config", path)
    expect(rc == 1 and "nosuch" in err and "nosuch.so" in err, err)


def test_missing_database_is_unavailable():
    text = config_text(ARGS, "@WORKDIR@").replace('dsn: "%s"' % ARGS.demo_db, 'dsn: "/nonexistent/x.db"', 1)
    rc, out, err = run("check-config", "--quiet", "--config", write_config(text))
    expect(rc == 1 and "FAILED" in out and "/nonexistent/x.db" in out, out + err)


def test_introspect():
    rc, out, err = run("introspect", "--config", good_config(), "demo")
    expect(rc == 0, err)
    tables = {t["name"] for t in json.loads(out)["tables"]}
    expect({"customers", "orders"} <= tables, tables)


def test_query():
    rc, out, err = run("query", "--config", good_config(), "demo",
                       "SELECT id, name FROM customers WHERE id = $1", "2")
    expect(rc == 0, err)
    r = json.loads(out)["result"]
    expect(r["rows"][0][0] == 2 and r["row_count"] == 1, r)
    rc, out, err = run("query", "--config", good_config(), "demo", "DELETE FROM customers")
    expect(rc == 1 and "query_rejected" in err, err)


def test_sign():
    body = b'{"tool_name":"list_data_sources","parameters":{},"execution_id":"exec_sign_1"}'
    rc, out, err = run("sign", "--secret-env", "E2E_SECRET", stdin=body)
    expect(rc == 0, err)
    headers = dict(line.split(": ", 1) for line in out.strip().splitlines())
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    expect(headers["X-Interactor-Signature"] == expected, headers)
    expect(headers["X-Interactor-Request-Id"] == "exec_sign_1", headers)
    expect(headers["X-Interactor-Timestamp"].endswith("Z"), headers)
    rc, _, err = run("sign", "--secret-env", "CN_UNSET_VAR", stdin=body)
    expect(rc == 1 and "CN_UNSET_VAR" in err, err)


def test_help_and_version():
    for cmd in ("serve", "check-config", "introspect", "query", "refresh", "drift", "sign", "tools",
                "register", "push-mappings", "rotate-secret"):
        rc, out, _ = run(cmd, "--help")
        expect(rc == 0 and "usage: interactor-connector " + cmd in out, "%s --help: %s" % (cmd, out))
    rc, out, _ = run("--help")
    expect(rc == 0 and "commands:" in out, out)
    rc, out, _ = run("version")
    expect(rc == 0 and out.startswith("interactor-connector "), out)
    rc, _, err = run("frobnicate")
    expect(rc == 2 and "unknown command" in err, err)
    rc, out, _ = run("tools")
    names = [t["name"] for t in json.loads(out)]
    expect(names == ["list_data_sources", "describe_schema", "search_schema", "run_query"], names)


def main():
    global ARGS
    ARGS = parse_args()
    r = Runner()
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            r.run(name, fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
