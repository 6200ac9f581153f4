#!/usr/bin/env python3
"""docker-compose.yml and docker/Dockerfile, checked without a Docker engine (none runs on the
build machines):

- the compose file: its structure against the parts of the Compose specification it uses, every
  file and directory it mounts or builds from exists, every variable it reads has a default or a
  required-message, depends_on names services with health checks, each database service is
  seeded from the fixture directory the tests load (tests/fixtures/<db>), and the seed scripts
  parse (sh -n) and name only fixture files that exist;
- the connector's configuration in the image (docker/connector.yaml): every ${VAR} it reads is
  set by the connector service, its users and databases are the ones the seed scripts create,
  and it passes `interactor-connector check-config --no-connect` with the build tree's drivers
  and dummy values for the variables;
- the Dockerfile: a build stage and a runtime stage, the runtime stage runs as a user that is not
  root, copies from the build stage only what that stage installed, and installs exactly the
  Debian packages that hold the libraries the build's binary and driver modules link (readelf
  DT_NEEDED, resolved with ldd, owners from dpkg: the build machine runs the image's Debian 12),
  plus ca-certificates; the build stage installs every -dev package scripts/install-deps.sh does.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from pkglib import SKIP, Runner, direct_dependency_packages, expect, main_guard, run  # noqa: E402

try:
    import yaml
except ImportError:  # python3-yaml (scripts/install-deps.sh --test)
    yaml = None

# The Compose specification's top-level and service keys (those a compose file for this project
# could use); anything else is a typo the engine would reject.
TOP_KEYS = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "env_file", "ports", "expose",
    "volumes", "depends_on", "healthcheck", "restart", "user", "working_dir", "networks",
    "container_name", "labels", "logging", "read_only", "tmpfs", "cap_drop", "cap_add",
    "security_opt", "ulimits", "stop_grace_period", "stop_signal", "profiles", "deploy", "init",
    "shm_size", "hostname", "extra_hosts", "configs", "secrets", "platform", "pull_policy",
}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval",
                    "disable"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}|\$\$")
# service -> (fixture directory the tests load, the seed script's directory)
SEEDS = {"postgres": ("tests/fixtures/postgres", "docker/postgres"),
         "mysql": ("tests/fixtures/mysql", "docker/mysql"),
         "mongo": ("tests/fixtures/mongodb", "docker/mongo")}


def load_compose(src):
    with open(os.path.join(src, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


def test_compose_structure(args):
    c = load_compose(args.source_dir)
    expect(isinstance(c, dict), "docker-compose.yml is not a mapping")
    bad = [k for k in c if k not in TOP_KEYS and not k.startswith("x-")]
    expect(not bad, "unknown top-level keys: %s" % bad)
    services = c.get("services") or {}
    expect(set(services) >= {"postgres", "mysql", "mongo", "connector"}, list(services))
    named_volumes = set((c.get("volumes") or {}).keys())
    for name, s in services.items():
        bad = [k for k in s if k not in SERVICE_KEYS and not k.startswith("x-")]
        expect(not bad, "service %s: unknown keys %s" % (name, bad))
        expect("image" in s or "build" in s, "service %s has neither image nor build" % name)
        hc = s.get("healthcheck")
        if hc:
            expect(set(hc) <= HEALTHCHECK_KEYS, "service %s: healthcheck keys %s" % (name, list(hc)))
            expect(isinstance(hc["test"], list) and hc["test"][0] in ("CMD", "CMD-SHELL", "NONE"),
                   "service %s: healthcheck test %r" % (name, hc["test"]))
        deps = s.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else [(d, None) for d in deps]):
            expect(dep in services, "service %s depends on unknown %s" % (name, dep))
            if cond and cond.get("condition") == "service_healthy":
                expect(services[dep].get("healthcheck"),
                       "service %s waits for %s to be healthy, which has no healthcheck" % (name, dep))
        for port in s.get("ports") or []:
            expect(re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+", str(port)), "port %r" % port)
        for v in s.get("volumes") or []:
            host, _, rest = v.partition(":")
            expect(rest, "volume %r has no container path" % v)
            container = rest.split(":")[0]
            expect(container.startswith("/"), "volume %r: container path not absolute" % v)
            if host.startswith("."):
                expect(os.path.exists(os.path.join(args.source_dir, host)),
                       "service %s mounts %s, which does not exist" % (name, host))
            else:
                expect(host in named_volumes, "service %s mounts undeclared volume %s" % (name, host))
        b = s.get("build")
        if b:
            ctx = os.path.join(args.source_dir, b.get("context", ".") if isinstance(b, dict) else b)
            expect(os.path.isdir(ctx), "build context %s" % ctx)
            if isinstance(b, dict) and b.get("dockerfile"):
                expect(os.path.isfile(os.path.join(ctx, b["dockerfile"])), b["dockerfile"])


def compose_variables(c):
    """[(variable, modifier)] of every ${...} in the compose file's strings."""
    found = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            found.extend((m.group(1), m.group(2)) for m in VAR.finditer(x) if m.group(1))
    walk(c)
    return found


def test_compose_variables(args):
    c = load_compose(args.source_dir)
    loose = sorted({v for v, mod in compose_variables(c) if not mod})
    expect(not loose, "variables without a default (:-) or a required message (:?): %s" % loose)


def test_seeds_are_the_test_fixtures(args):
    c = load_compose(args.source_dir)
    for svc, (fixtures, seed) in SEEDS.items():
        vols = c["services"][svc].get("volumes") or []
        mounts = {v.split(":")[1]: os.path.normpath(v.split(":")[0]) for v in vols}
        expect(mounts.get("/fixtures") == fixtures,
               "%s: /fixtures is %s, not the tests' %s" % (svc, mounts.get("/fixtures"), fixtures))
        expect(mounts.get("/docker-entrypoint-initdb.d") == seed,
               "%s: the seed scripts are not %s" % (svc, seed))
        for script in sorted(os.listdir(os.path.join(args.source_dir, seed))):
            path = os.path.join(args.source_dir, seed, script)
            text = open(path).read()
            if script.endswith(".sh"):
                run(["sh", "-n", path])
            # fixture files a script names by path must exist
            for ref in re.findall(r"/fixtures/([A-Za-z0-9_.-]+\.(?:sql|json))", text):
                expect(os.path.exists(os.path.join(args.source_dir, fixtures, ref)),
                       "%s names /fixtures/%s, missing from %s" % (script, ref, fixtures))
        expect(any(f.endswith((".sql", ".json")) for f in os.listdir(
            os.path.join(args.source_dir, fixtures))), "no fixture files in " + fixtures)


def connector_config(args):
    with open(os.path.join(args.source_dir, "docker/connector.yaml")) as f:
        return f.read()


def test_connector_config_matches_the_services(args):
    c = load_compose(args.source_dir)
    text = connector_config(args)
    env = c["services"]["connector"].get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    missing = sorted({v for v, _ in (m.groups() for m in VAR.finditer(text)) if v} - set(env))
    expect(not missing, "docker/connector.yaml reads %s, which the connector service does not set"
           % missing)
    cfg = yaml.safe_load(text)
    dsns = {s["driver"]: s["dsn"] for s in cfg["sources"]}
    pg = open(os.path.join(args.source_dir, "docker/postgres/00-roles.sh")).read()
    my = open(os.path.join(args.source_dir, "docker/mysql/00-init.sh")).read()
    mongo = open(os.path.join(args.source_dir, "docker/mongo/00-fixtures.js")).read()
    m = re.search(r"host=(\w+) dbname=(\w+) user=(\w+)", dsns["postgres"])
    expect(m and m.group(1) == "postgres", dsns["postgres"])
    expect("CREATE DATABASE %s" % m.group(2) in pg and "CREATE ROLE %s" % m.group(3) in pg,
           "the postgres dsn's database or user is not what 00-roles.sh creates")
    m = re.match(r"mysql://(\w+):[^@]+@(\w+):3306/(\w+)$", dsns["mysql"])
    expect(m and m.group(2) == "mysql", dsns["mysql"])
    expect("CREATE DATABASE %s" % m.group(3) in my and "CREATE USER '%s'" % m.group(1) in my,
           "the mysql dsn's database or user is not what 00-init.sh creates")
    m = re.match(r"mongodb://(\w+):[^@]+@(\w+):27017/(\w+)$", dsns["mongodb"])
    expect(m and m.group(2) == "mongo", dsns["mongodb"])
    expect("getSiblingDB('%s')" % m.group(3) in mongo and "user: '%s'" % m.group(1) in mongo,
           "the mongodb dsn's database or user is not what 00-fixtures.js creates")


def test_connector_config_checks(args):
    """check-config --no-connect on docker/connector.yaml, its image paths mapped to the build
    tree (the demo database and mappings) and a scratch state directory."""
    image_conf = "/opt/interactor-connector/share/interactor-connector/conf"
    work = tempfile.mkdtemp(prefix="cn-docker-")
    try:
        conf = os.path.join(work, "conf")
        shutil.copytree(os.path.join(args.source_dir, "conf"), conf,
                        ignore=shutil.ignore_patterns("*.db", "*.db-*"))
        shutil.copy(args.demo_db, os.path.join(conf, "demo.db"))
        text = connector_config(args).replace(image_conf, conf)
        text = text.replace("/var/lib/interactor-connector", work)
        expect(image_conf not in text, "paths left")
        text += '\ndrivers: { dir: "%s" }\n' % args.driver_dir
        path = os.path.join(work, "connector.yaml")
        with open(path, "w") as f:
            f.write(text)
        env = dict(os.environ, INTERACTOR_CALLBACK_SECRET="dummy-secret-for-the-check-0123456789",
                   CONNECTOR_RO_PASSWORD="dummy-password")
        p = run([args.binary, "check-config", "--no-connect", "--config", path], env=env, check=False)
        expect(p.returncode == 0, "check-config --no-connect failed (%d):\n%s%s"
               % (p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
        for name in ("demo", "shop", "store", "shop_docs"):
            expect(re.search(r"^source %s \(\w+\): driver .* loaded" % name, p.stdout, re.M),
                   "no driver line for %s:\n%s" % (name, p.stdout[-1500:]))
        expect("dummy-password" not in p.stdout + p.stderr, "a password was printed")
        # the SQLite demo is reachable here: check it for real too
        demo_only = re.sub(r"\n  - name: shop.*?(?=\ndrivers:)", "", text, flags=re.S)
        with open(path, "w") as f:
            f.write(demo_only)
        p = run([args.binary, "check-config", "--quiet", "--config", path], env=env, check=False)
        expect(p.returncode == 0 and "source demo (sqlite): ok" in p.stdout,
               "check-config on the demo source failed:\n%s%s" % (p.stdout[-1500:], p.stderr[-800:]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dockerfile_stages(src):
    """[(name, base, [(instruction, argument)])] with continuation lines joined."""
    with open(os.path.join(src, "docker/Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, arg = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), re.I)
            stages.append((m.group(2), m.group(1), []))
        else:
            expect(stages, "instruction before FROM: " + line)
            stages[-1][2].append((instr, arg.strip()))
    return stages


def apt_packages(instructions):
    pkgs = []
    for instr, arg in instructions:
        if instr == "RUN" and "apt-get install" in arg:
            words = shlex.split(arg.split("apt-get install", 1)[1].split("&&")[0])
            pkgs += [w for w in words if not w.startswith("-")]
    return pkgs


def test_dockerfile_stages(args):
    stages = dockerfile_stages(args.source_dir)
    expect(len(stages) >= 2, "not a multi-stage build")
    build, runtime = stages[0], stages[-1]
    expect(build[0] == "build", "the first stage is not named build")
    expect(runtime[1].startswith("debian:12"), "the runtime image is %s, not Debian 12" % runtime[1])
    users = [a for i, a in runtime[2] if i == "USER"]
    expect(users and users[-1] not in ("root", "0") and not users[-1].startswith("0:"),
           "the runtime stage runs as %s" % (users[-1] if users else "root"))
    created = " ".join(a for i, a in runtime[2] if i == "RUN")
    expect(re.search(r"useradd .*\b%s\b" % re.escape(users[-1]), created),
           "the runtime stage does not create user %s" % users[-1])
    build_runs = " ".join(a for i, a in build[2] if i == "RUN")
    m = re.search(r"CMAKE_INSTALL_PREFIX=(\S+)", build_runs)
    expect(m and "cmake --install" in build_runs, "the build stage does not cmake --install")
    prefix = m.group(1)
    copies = [a for i, a in runtime[2] if i == "COPY"]
    for c in copies:
        words = c.split()
        if words[0].startswith("--from="):
            expect(words[0] == "--from=build", c)
            expect(words[1] == prefix or words[1].startswith(prefix + "/"),
                   "%s is not under the build stage's install prefix %s" % (words[1], prefix))
        else:
            for s in words[:-1]:
                expect(os.path.exists(os.path.join(args.source_dir, s)), "COPY source %s" % s)
    entry = " ".join(a for i, a in runtime[2] if i in ("ENTRYPOINT", "CMD"))
    expect(prefix + "/bin/interactor-connector" in entry, "ENTRYPOINT is not the installed binary")
    expect("/etc/interactor-connector/connector.yaml" in entry and any(
        "docker/connector.yaml /etc/interactor-connector/connector.yaml" in c for c in copies),
        "CMD's config is not docker/connector.yaml")


def test_runtime_packages_match_the_build(args):
    elfs = [args.binary] + sorted(os.path.join(args.driver_dir, f) for f in os.listdir(args.driver_dir)
                                  if f.endswith(".so"))
    drivers = {os.path.basename(e)[:-3] for e in elfs[1:]}
    expect(drivers >= {"sqlite", "postgres", "mysql", "mongodb"},
           "the build has drivers %s; this check needs all four" % sorted(drivers))
    linked = direct_dependency_packages(elfs)
    linked.pop("libc6", None)  # in every Debian image
    runtime = set(apt_packages(dockerfile_stages(args.source_dir)[-1][2]))
    missing = sorted(set(linked) - runtime)
    extra = sorted(runtime - set(linked) - {"ca-certificates"})
    expect(not missing, "the runtime image lacks %s, which the build links (%s): add them to "
           "docker/Dockerfile's runtime stage" % (missing, {p: linked[p] for p in missing}))
    expect(not extra, "the runtime image installs %s, which nothing the build made links" % extra)
    print("runtime packages = linked packages: %s" % " ".join(sorted(linked)))


def test_build_packages_cover_install_deps(args):
    with open(os.path.join(args.source_dir, "scripts/install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"^pkgs=\(([^)]*)\)", text, re.M)
    expect(m, "cannot read install-deps.sh's package list")
    needed = {p for p in m.group(1).split() if p.endswith("-dev")}
    have = set(apt_packages(dockerfile_stages(args.source_dir)[0][2]))
    expect(needed <= have, "the build stage lacks %s (scripts/install-deps.sh installs them)"
           % sorted(needed - have))


def test_dockerignore(args):
    path = os.path.join(args.source_dir, ".dockerignore")
    expect(os.path.exists(path), "no .dockerignore: COPY . /src would send the build trees")
    pats = [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]
    for must in ("build*", ".git"):
        expect(must in pats, ".dockerignore does not leave out %s" % must)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--driver-dir", required=True)
    ap.add_argument("--demo-db", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()
    for a in ("binary", "driver_dir", "demo_db", "source_dir"):
        setattr(args, a, os.path.abspath(getattr(args, a)))
    if yaml is None:
        print("SKIP: python3-yaml is not installed (scripts/install-deps.sh --test installs it)")
        return SKIP
    r = Runner()
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            r.run(name, fn, args)
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
