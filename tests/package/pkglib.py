"""What the packaging tests share: a tiny runner, running commands, and which Debian packages
provide the shared libraries an ELF file needs (for the .deb's Depends and the Docker image's
runtime packages)."""

import os
import re
import subprocess
import sys

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests


def run(argv, check=True, env=None, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=kw.pop("timeout", 120),
                       **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), p.returncode, p.stdout[-2000:],
                                                      p.stderr[-2000:]))
    return p


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


class Runner:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def run(self, name, fn, *a):
        try:
            r = fn(*a)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print("FAIL", name, "-", e, flush=True)
            return
        if r == SKIP:
            self.skipped += 1
            print("SKIP", name, flush=True)
        else:
            self.passed += 1
            print("PASS", name, flush=True)

    def finish(self):
        print("%d passed, %d failed, %d skipped" % (self.passed, self.failed, self.skipped))
        if self.failed:
            return 1
        return 0 if self.passed else SKIP


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def needed_sonames(path):
    out = run(["readelf", "-d", path]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def resolved_libs(path, env=None):
    """soname -> resolved path, from ldd; raises when one does not resolve."""
    out = run(["ldd", path], env=env).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+|not found)", line)
        if m:
            expect(m.group(2) != "not found", "%s: %s does not resolve (ldd)" % (path, m.group(1)))
            libs[m.group(1)] = m.group(2)
    return libs


def owning_package(path):
    """The Debian package that installed path (following /lib -> /usr/lib of merged /usr)."""
    candidates = [path, os.path.realpath(path)]
    for c in list(candidates):
        if c.startswith("/usr/lib/"):
            candidates.append(c[len("/usr"):])
        elif c.startswith("/lib/"):
            candidates.append("/usr" + c)
    for c in candidates:
        p = run(["dpkg-query", "-S", c], check=False)
        if p.returncode == 0:
            return p.stdout.split(":")[0].strip()
    raise AssertionError("no installed package owns %s" % path)


def direct_dependency_packages(elfs):
    """{package: [sonames]} of the libraries the ELF files name in DT_NEEDED."""
    pkgs = {}
    for elf in elfs:
        libs = resolved_libs(elf)
        for so in needed_sonames(elf):
            expect(so in libs, "%s: %s is needed but ldd does not list it" % (elf, so))
            pkgs.setdefault(owning_package(libs[so]), set()).add(so)
    return {k: sorted(v) for k, v in pkgs.items()}


def main_guard(fn):
    try:
        sys.exit(fn())
    except KeyboardInterrupt:
        sys.exit(130)
