#!/usr/bin/env python3
"""The Debian package, built with `cpack -G DEB` from the build tree and installed without
touching the build machine:

- its control data: name, version, Depends naming every package that holds a library the
  binary or a driver module links (DT_NEEDED, resolved with ldd, owners from dpkg), the config
  as a conffile, maintainer scripts that parse;
- its files: the FHS layout, every ELF file's libraries resolving without LD_LIBRARY_PATH;
- installed with `dpkg --root` into a scratch root (its dpkg database holds the host's entries
  for the packages Depends names, so dependencies are checked, not forced), maintainer scripts
  run outside a chroot with DPKG_ROOT (--force-script-chrootless): the system user, the state
  directory (0750, the user's) and the secrets file (0640, the user's group) exist;
- the installed tree runs: `interactor-connector version`, `check-config` on the demo and on the
  shipped /etc config, and `serve` answering /healthz and /readyz, living through a SIGHUP (what
  the unit's ExecReload sends) and exiting 0 on SIGTERM, with a JSON-only log;
- an upgrade (the same package again) keeps a changed conffile and the secrets file; a purge
  removes the state directory, the secrets file and the config, and keeps the user.

Needs a build configured with CMAKE_INSTALL_PREFIX=/usr (scripts/test.sh does it), cpack,
dpkg-shlibdeps and root (dpkg --root installs files as root:root and the postinst chowns);
otherwise it is skipped (exit 77).
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from pkglib import (SKIP, Runner, direct_dependency_packages, expect, is_elf,  # noqa: E402
                    main_guard, run)

CONFIG = "/etc/interactor-connector/connector.yaml"
ENVFILE = "/etc/interactor-connector/environment"
STATE = "/var/lib/interactor-connector"
USER = "interactor-connector"
SECRET = "deb-test-secret-0123456789abcdef"


class Ctx:
    pass


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update(extra)
    return env


def build_deb(ctx):
    out = os.path.join(ctx.work, "cpack")
    run(["cpack", "--config", os.path.join(ctx.build_dir, "CPackConfig.cmake"), "-G", "DEB",
         "-B", out], cwd=ctx.build_dir, timeout=300)
    debs = glob.glob(os.path.join(out, "*.deb"))
    expect(len(debs) == 1, "cpack made %s" % debs)
    return debs[0]


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name]).stdout.strip()


def depends_names(deb):
    names = set()
    for alt in field(deb, "Depends").split(","):
        for a in alt.split("|"):
            names.add(a.strip().split(" ")[0].split(":")[0])
    return names


def test_control(ctx):
    deb = ctx.deb
    expect(field(deb, "Package") == "interactor-connector", field(deb, "Package"))
    expect(field(deb, "Version") == ctx.version + "-1", field(deb, "Version"))
    expect(field(deb, "Architecture") == run(["dpkg", "--print-architecture"]).stdout.strip(),
           field(deb, "Architecture"))
    ctrl = os.path.join(ctx.work, "control")
    run(["dpkg-deb", "-e", deb, ctrl])
    with open(os.path.join(ctrl, "conffiles")) as f:
        expect(f.read().split() == [CONFIG], "conffiles: not exactly %s" % CONFIG)
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(ctrl, script)
        expect(os.access(path, os.X_OK), script + " is not executable")
        run(["sh", "-n", path])


def test_files_and_libraries(ctx):
    x = os.path.join(ctx.work, "extracted")
    run(["dpkg-deb", "-x", ctx.deb, x])
    files = [os.path.join(d, f)[len(x):] for d, _, fs in os.walk(x) for f in fs]
    expected = ["/usr/bin/interactor-connector", CONFIG,
                "/usr/lib/systemd/system/interactor-connector.service",
                "/usr/share/man/man1/interactor-connector.1.gz",
                "/usr/share/interactor-connector/conf/demo.yaml",
                "/usr/share/interactor-connector/conf/demo.db",
                "/usr/share/interactor-connector/environment.example",
                "/usr/share/doc/interactor-connector/README.md"]
    expected += ["/usr/%s/interactor-connector/drivers/%s.so" % (ctx.libdir, d)
                 for d in ("sqlite", "postgres", "mysql", "mongodb")]
    missing = [f for f in expected if f not in files]
    expect(not missing, "not in the package: %s" % missing)
    elfs = sorted(x + f for f in files if is_elf(x + f))
    expect(len(elfs) >= 5, "ELF files: %s" % elfs)
    linked = direct_dependency_packages(elfs)  # raises when ldd leaves one unresolved
    missing = sorted(set(linked) - depends_names(ctx.deb))
    expect(not missing, "Depends lacks %s, which the package's files link (%s)"
           % (missing, {p: linked[p] for p in missing}))
    print("Depends: %s" % field(ctx.deb, "Depends"))


def scratch_root(ctx):
    """A root with a dpkg database that knows the packages the .deb depends on."""
    r = os.path.join(ctx.work, "root")
    admin = os.path.join(r, "var/lib/dpkg")
    for d in ("info", "updates", "triggers"):
        os.makedirs(os.path.join(admin, d), exist_ok=True)
    open(os.path.join(admin, "available"), "w").close()
    stanzas = []
    for name in sorted(depends_names(ctx.deb)):
        p = run(["dpkg-query", "-s", name], check=False)
        expect(p.returncode == 0, "%s, which the package depends on, is not installed here" % name)
        stanzas.append(p.stdout.strip())
        full = run(["dpkg-query", "-W", "-f=${binary:Package}", name]).stdout.strip()
        open(os.path.join(admin, "info", full + ".list"), "w").close()
    with open(os.path.join(admin, "status"), "w") as f:
        f.write("\n\n".join(stanzas) + "\n")
    etc = os.path.join(r, "etc")
    os.makedirs(etc, exist_ok=True)
    for name, text, mode in (("passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
                             ("group", "root:x:0:\n", 0o644),
                             ("shadow", "root:*:19000:0:99999:7:::\n", 0o640),
                             ("gshadow", "root:*::\n", 0o640)):
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(etc, name), mode)
    return r


def dpkg(ctx, *argv):
    return run(["dpkg", "--root=" + ctx.root, "--force-script-chrootless", "--log=/dev/null",
                *argv], env=clean_env(), timeout=120)


def passwd_entry(ctx):
    for line in open(os.path.join(ctx.root, "etc/passwd")):
        f = line.rstrip("\n").split(":")
        if f[0] == USER:
            return f
    return None


def test_install_into_scratch_root(ctx):
    if os.geteuid() != 0:
        print("note: not root: dpkg --root cannot install files as root:root; skipped")
        ctx.root = None
        return SKIP
    ctx.root = scratch_root(ctx)
    p = dpkg(ctx, "-i", ctx.deb)
    expect("dependency problems" not in p.stderr, p.stderr)
    status = open(os.path.join(ctx.root, "var/lib/dpkg/status")).read()
    block = status.split("Package: interactor-connector\n", 1)[1].split("\n\n")[0]
    expect("Status: install ok installed" in block, block[:300])
    expect(re.search(r"^Conffiles:\n %s [0-9a-f]{32}$" % re.escape(CONFIG), block, re.M), block)
    pw = passwd_entry(ctx)
    expect(pw and pw[5] == STATE and pw[6] == "/usr/sbin/nologin", "user entry: %s" % pw)
    uid, gid = int(pw[2]), int(pw[3])
    expect(0 < uid < 1000, "not a system uid: %d" % uid)
    st = os.stat(ctx.root + STATE)
    expect(st.st_uid == uid and st.st_gid == gid and st.st_mode & 0o777 == 0o750,
           "state directory %o %d:%d" % (st.st_mode & 0o777, st.st_uid, st.st_gid))
    st = os.stat(ctx.root + ENVFILE)
    expect(st.st_uid == 0 and st.st_gid == gid and st.st_mode & 0o777 == 0o640,
           "secrets file %o %d:%d" % (st.st_mode & 0o777, st.st_uid, st.st_gid))
    return None


def installed_tree(ctx):
    """The scratch root when the package is installed there, else the extracted files."""
    return ctx.root or os.path.join(ctx.work, "extracted")


def rooted_config(ctx, r):
    """The shipped /etc config with its absolute paths moved into r."""
    text = open(r + CONFIG).read()
    text = text.replace('"/usr/share/', '"%s/usr/share/' % r).replace('"/var/lib/', '"%s/var/lib/' % r)
    os.makedirs(r + STATE, exist_ok=True)
    path = os.path.join(ctx.work, "etc-connector.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_installed_binary_runs(ctx):
    r = installed_tree(ctx)
    binary = r + "/usr/bin/interactor-connector"
    out = run([binary, "version"], env=clean_env()).stdout
    expect(out.startswith("interactor-connector %s " % ctx.version), out)
    env = clean_env(INTERACTOR_CALLBACK_SECRET=SECRET)
    for config in (r + "/usr/share/interactor-connector/conf/demo.yaml", rooted_config(ctx, r)):
        p = run([binary, "check-config", "--config", config], env=env, check=False)
        expect(p.returncode == 0 and "configuration ok" in p.stdout,
               "check-config %s:\n%s%s" % (config, p.stdout[-1500:], p.stderr[-500:]))
        m = re.search(r"source demo \(sqlite\): ok, \d+ tables, driver (\S+)", p.stdout)
        expect(m and os.path.realpath(m.group(1)).startswith(os.path.realpath(r) + "/"),
               "driver not from the installed tree: %s" % (m and m.group(1)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_installed_daemon_serves(ctx):
    r = installed_tree(ctx)
    config = rooted_config(ctx, r)
    port = free_port()
    log_path = os.path.join(ctx.work, "serve.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([r + "/usr/bin/interactor-connector", "serve", "--config", config,
                                 "--listen", "127.0.0.1:%d" % port], stdout=log, stderr=log,
                                env=clean_env(INTERACTOR_CALLBACK_SECRET=SECRET))
        try:
            deadline = time.time() + 30
            while True:
                expect(proc.poll() is None, "serve exited %s" % proc.returncode)
                try:
                    if get(port, "/healthz") == 200:
                        break
                except OSError:
                    pass
                expect(time.time() < deadline, "no /healthz within 30 s")
                time.sleep(0.1)
            expect(get(port, "/readyz") == 200, "/readyz is not 200")
            proc.send_signal(signal.SIGHUP)  # systemctl reload
            time.sleep(0.5)
            expect(proc.poll() is None, "serve died of SIGHUP")
            expect(get(port, "/healthz") == 200, "/healthz after SIGHUP")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=45)
    lines = open(log_path).read().splitlines()
    expect(rc == 0, "exit status %d after SIGTERM" % rc)
    bad = [line for line in lines if not line.startswith("{") or not json.loads(line)]
    expect(not bad, "log lines that are not JSON: %s" % bad[:3])
    expect(any("SIGHUP" in line for line in lines), "nothing logged for SIGHUP")


def test_upgrade_keeps_changes(ctx):
    if not ctx.root:
        return SKIP
    with open(ctx.root + CONFIG, "a") as f:
        f.write("# changed by the operator\n")
    with open(ctx.root + ENVFILE, "a") as f:
        f.write("INTERACTOR_CALLBACK_SECRET=%s\n" % SECRET)
    dpkg(ctx, "-i", ctx.deb)
    expect(open(ctx.root + CONFIG).read().endswith("# changed by the operator\n"),
           "the upgrade replaced the changed conffile")
    expect(SECRET in open(ctx.root + ENVFILE).read(), "the upgrade replaced the secrets file")
    expect(os.path.isdir(ctx.root + STATE), "the upgrade removed the state directory")
    return None


def test_purge(ctx):
    if not ctx.root:
        return SKIP
    with open(ctx.root + STATE + "/connector-state.db", "w") as f:
        f.write("state")
    dpkg(ctx, "--purge", "interactor-connector")
    for gone in (STATE, ENVFILE, CONFIG, "/usr/bin/interactor-connector"):
        expect(not os.path.exists(ctx.root + gone), "%s is left after a purge" % gone)
    expect(passwd_entry(ctx), "the purge removed the system user")
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--libdir", required=True)
    ap.add_argument("--version", required=True)
    args = ap.parse_args()
    if args.prefix != "/usr":
        print("SKIP: the build's CMAKE_INSTALL_PREFIX is %s; a Debian package needs /usr "
              "(configure with -DCMAKE_INSTALL_PREFIX=/usr, as scripts/test.sh does)" % args.prefix)
        return SKIP
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "dpkg", "readelf", "ldd"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (dpkg-dev, binutils)" % tool)
            return SKIP
    ctx = Ctx()
    ctx.build_dir = os.path.abspath(args.build_dir)
    ctx.libdir, ctx.version = args.libdir, args.version
    ctx.work = tempfile.mkdtemp(prefix="cn-deb-")
    ctx.root = None
    r = Runner()
    try:
        t0 = time.time()
        ctx.deb = build_deb(ctx)
        print("built %s in %.1f s" % (os.path.basename(ctx.deb), time.time() - t0))
        for name, fn in list(globals().items()):
            if name.startswith("test_"):
                r.run(name, fn, ctx)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
