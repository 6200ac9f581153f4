#!/usr/bin/env python3
"""`cmake --install` of the build tree, and the systemd unit it installs:

- into a scratch DESTDIR with the configured prefix: the FHS layout (binary, driver modules,
  unit, man page, example config, demo, schemas, docs), and the installed binary runs
  check-config on the installed demo, finding its drivers beside it;
- into a scratch DESTDIR under another prefix (--prefix /opt/ic): the tree moves with it and the
  binary still finds its drivers (relative to itself, not the configured prefix);
- the unit: the hardening settings operators look for, ExecStart on the installed binary and
  config, the config's state file inside the unit's writable state directory, ExecReload sending
  SIGHUP; `systemd-analyze verify` accepts it and `systemd-analyze security --offline` rates its
  exposure 2.0 or lower (skipped where systemd-analyze is not installed).
"""

import argparse
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from pkglib import SKIP, Runner, expect, main_guard, run  # noqa: E402

SECRET_ENV = {"INTERACTOR_CALLBACK_SECRET": "install-test-secret-0123456789"}
UNIT = "interactor-connector.service"
HARDENING = {
    "User": "interactor-connector",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "StateDirectory": "interactor-connector",
    "ReadWritePaths": "/var/lib/interactor-connector",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}


def install(args, destdir, prefix=None):
    argv = ["cmake", "--install", args.build_dir]
    if prefix:
        argv += ["--prefix", prefix]
    run(argv, env=dict(os.environ, DESTDIR=destdir))


def clean_env():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(SECRET_ENV)
    return env


def check_demo(binary, demo_yaml, root):
    p = run([binary, "check-config", "--quiet", "--config", demo_yaml], env=clean_env(), check=False)
    expect(p.returncode == 0, "check-config on the installed demo failed:\n%s%s" % (p.stdout, p.stderr))
    m = re.search(r"source demo \(sqlite\): ok, \d+ tables, driver (\S+)", p.stdout)
    expect(m, p.stdout)
    expect(os.path.realpath(m.group(1)).startswith(os.path.realpath(root) + "/"),
           "the driver came from %s, not the installed tree" % m.group(1))


def layout(prefix, libdir, sysconfdir):
    return [
        prefix + "/bin/interactor-connector",
        *["%s/%s/interactor-connector/drivers/%s.so" % (prefix, libdir, d)
          for d in ("sqlite", "postgres", "mysql", "mongodb")],
        prefix + "/lib/systemd/system/" + UNIT,
        prefix + "/share/man/man1/interactor-connector.1.gz",
        sysconfdir + "/interactor-connector/connector.yaml",
        prefix + "/share/interactor-connector/conf/demo.yaml",
        prefix + "/share/interactor-connector/conf/demo.db",
        prefix + "/share/interactor-connector/conf/mappings/demo.yaml",
        prefix + "/share/interactor-connector/schema/config.schema.json",
        prefix + "/share/interactor-connector/environment.example",
        prefix + "/share/doc/interactor-connector/README.md",
        prefix + "/share/doc/interactor-connector/configuration.md",
    ]


def sysconfdir_of(prefix):
    # GNUInstallDirs: /usr's configuration lives in /etc
    return "/etc" if prefix == "/usr" else prefix + "/etc"


def test_destdir_layout(args, work):
    root = os.path.join(work, "destdir")
    install(args, root)
    missing = [p for p in layout(args.prefix, args.libdir, sysconfdir_of(args.prefix))
               if not os.path.exists(root + p)]
    expect(not missing, "not installed: %s" % missing)
    binary = root + args.prefix + "/bin/interactor-connector"
    out = run([binary, "version"], env=clean_env()).stdout
    expect(out.startswith("interactor-connector "), out)
    check_demo(binary, root + args.prefix + "/share/interactor-connector/conf/demo.yaml", root)
    if shutil.which("man"):
        p = run(["man", "--warnings", "-l", root + args.prefix + "/share/man/man1/interactor-connector.1.gz"],
                env=dict(os.environ, MANWIDTH="80"), check=False)
        expect(p.returncode == 0 and not p.stderr.strip() and "check-config" in p.stdout,
               "the installed man page does not render: %s" % p.stderr)


def test_scratch_prefix(args, work):
    root = os.path.join(work, "moved")
    install(args, root, "/opt/ic")
    binary = root + "/opt/ic/bin/interactor-connector"
    expect(os.path.exists(binary), "no binary under the new prefix")
    drivers = root + "/opt/ic/%s/interactor-connector/drivers/sqlite.so" % args.libdir
    expect(os.path.exists(drivers), "no drivers under the new prefix")
    check_demo(binary, root + "/opt/ic/share/interactor-connector/conf/demo.yaml", root)


def unit_settings(path):
    settings = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, _, v = line.partition("=")
            settings.setdefault(k, []).append(v)
    return settings


def test_systemd_unit(args, work):
    root = os.path.join(work, "destdir")
    if not os.path.isdir(root):
        install(args, root)
    unit = root + args.prefix + "/lib/systemd/system/" + UNIT
    s = unit_settings(unit)
    wrong = {k: s.get(k) for k, v in HARDENING.items() if v not in s.get(k, [])}
    expect(not wrong, "hardening settings missing or different: %s" % wrong)
    expect("@system-service" in s.get("SystemCallFilter", []), s.get("SystemCallFilter"))
    config = sysconfdir_of(args.prefix) + "/interactor-connector/connector.yaml"
    expect(s["ExecStart"] == ["%s/bin/interactor-connector serve --config %s" % (args.prefix, config)],
           "ExecStart: %s" % s["ExecStart"])
    text = open(root + config).read()
    m = re.search(r'^\s*path:\s*"([^"]+)"', text, re.M)
    expect(m and m.group(1).startswith("/var/lib/interactor-connector/"),
           "the config's state file %s is outside the unit's state directory" % (m and m.group(1)))
    if not shutil.which("systemd-analyze"):
        print("note: systemd-analyze is not installed; verify and security skipped")
        return None
    # verify needs the binaries it names and the man page of Documentation=man:
    checked = os.path.join(work, UNIT)
    with open(unit) as f, open(checked, "w") as out:
        out.write(f.read().replace("ExecStart=%s/bin/" % args.prefix,
                                   "ExecStart=%s%s/bin/" % (root, args.prefix)))
    env = dict(os.environ, MANPATH=root + args.prefix + "/share/man", SYSTEMD_LOG_COLOR="0")
    p = run(["systemd-analyze", "verify", checked], env=env, check=False, cwd=work)
    expect(p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(),
           "systemd-analyze verify:\n%s%s" % (p.stdout, p.stderr))
    p = run(["systemd-analyze", "security", "--offline=true", "--threshold=20", checked], env=env,
            check=False, cwd=work)
    overall = re.search(r"Overall exposure level for \S+: ([0-9.]+ \w+)", p.stdout)
    expect(p.returncode == 0, "exposure above 2.0: %s" % (overall.group(1) if overall else p.stdout[-800:]))
    print("systemd-analyze security: exposure %s" % (overall.group(1) if overall else "?"))
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--prefix", required=True, help="CMAKE_INSTALL_PREFIX of the build")
    ap.add_argument("--libdir", required=True, help="CMAKE_INSTALL_LIBDIR of the build")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cn-install-")
    r = Runner()
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                r.run(name, fn, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
