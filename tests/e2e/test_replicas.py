"""Three replicas behind HAProxy sharing one PostgreSQL state store (state.backend: postgres):
one execution per execution_id whichever replica each delivery reaches, counted where it
matters, at the source database (pg_stat_statements of the test PostgreSQL, one entry per id).

  migrations   three replicas start at once on an empty state database: all come up, and the
               schema version is recorded once
  deliveries   1,000 executions, each delivered 3 times at once, to the 3 replicas directly
               (so the three deliveries of an id always reach different replicas), one in five a
               4th time through HAProxy; 429/5xx retried after Retry-After as Interactor does,
               within its 30 s: every id runs once at the source and all its answers are the
               same bytes
  sigkill      a replica killed with SIGKILL while deliveries are in flight; its deliveries are
               retried through HAProxy; the claims it held are taken over after the stale
               timeout: every id ends answered, its answers all the same bytes. An id whose
               query reached the source while the dead replica held it may run a second time
               (the answer of the first was never written, so never seen): counted, reported,
               and its answers must still agree
  state_restart  the state database (a second throwaway PostgreSQL, so the source is not
               touched) stopped for a few seconds and started again under load: 429 or 503
               meanwhile, never another status, never a second execution, and everything
               answered after

The source is a fresh database on the test PostgreSQL (so its pg_stat_statements entries are
this run's alone). Each id's query has its own shape (a cast per digit of its number: the
statement's fingerprint differs, so pg_stat_statements keeps one entry per id) and names the id
in a comment that the entry keeps; it answers clock_timestamp() too, so that two executions of
an id never answer the same bytes.

Skips (exit 77) when haproxy is not installed or the binary does not know state.backend."""

import heapq
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import SECRET, Daemon, Runner, expect, free_port, iso, parse_args, sign  # noqa: E402

SKIP = 77
# one cast per decimal digit of an id's number: 10^4 distinct statement shapes
TYPES = ["int2", "int4", "int8", "float4", "float8", "numeric", "text", "varchar", "bpchar", "jsonb"]
DIGITS = 4
RETRY = {202, 429, 500, 502, 503, 504}
BACKOFF = [1, 1, 2, 4, 8, 16]  # Interactor: attempts at 0, 1, 2, 4, 8, 16 s
PLATFORM_BUDGET = 31.0  # the last of Interactor's attempts starts 31 s after the first
STALE_S = 6  # the state store's stale timeout in this test (state.stale_timeout)
WORKERS = 24
LEAD_S = 0.05  # how far ahead the leading delivery of an id goes (the SIGKILL case)
COMMENT = re.compile(r"/\* (exec_[A-Za-z0-9_]+) \*/")


def log(*a):
    print("#", *a, flush=True)


# ---- PostgreSQL, through psql --------------------------------------------------------------

def psql(dsn, sql, check=True):
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                        "-d", dsn, "-c", sql], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("psql: %s: %s" % (sql[:120], p.stderr.strip()))
    return [line.split("\t") for line in p.stdout.splitlines() if line]


def with_db(dsn, db):
    expect("dbname=connector_test" in dsn, "unexpected DSN shape (no dbname=connector_test)")
    return dsn.replace("dbname=connector_test", "dbname=" + db)


def as_owner(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + cmd


class SecondPg:
    """A throwaway PostgreSQL of tests/support/pg.sh of the test's own: the state store whose
    restart must not touch the source."""

    def __init__(self, args):
        self.script = os.path.join(args.source_dir, "tests/support/pg.sh")
        self.dir = tempfile.mkdtemp(prefix="cn-rep-pg2-")
        os.rmdir(self.dir)
        self.env = {}

    def start(self):
        subprocess.run(["bash", self.script, "start", self.dir], check=True, timeout=180,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(self.dir, "pg.env")) as f:
            for line in f:
                m = re.match(r"export (\w+)=(.*)$", line.strip())
                if m:
                    # values are printf %q words: shlex undoes the quoting
                    self.env[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
        return self

    def halt(self):
        subprocess.run(as_owner([self.env["CN_TEST_PG_CTL"], "-D", self.env["CN_TEST_PG_DATA_DIR"],
                                 "-m", "fast", "-w", "-t", "60", "stop"]),
                       check=True, timeout=90, stdout=subprocess.DEVNULL)

    def restart(self):
        subprocess.run(["bash", self.script, "restart", self.dir], check=True, timeout=120,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(["bash", self.script, "stop", self.dir], timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- the connector's configuration and HAProxy's ------------------------------------------

def replica_config(state_dsn_var, extra_state=""):
    return f"""
server: {{ max_connections: 128, max_connections_per_address: 128 }}
auth: {{ callback_secrets: ["${{E2E_SECRET}}"] }}
state: {{ backend: postgres, dsn: "${{{state_dsn_var}}}", pool: 4, path: "@WORKDIR@/state.db"{extra_state} }}
log: {{ level: info, format: json }}
sources:
  - name: pg
    driver: postgres
    dsn: "${{CN_REP_SOURCE_DSN}}"
    pool: {{ size: 8 }}
    limits: {{ max_rows: 10, max_result_bytes: 60000, timeout_ms: 8000 }}
"""


def haproxy_config(port, backends):
    servers = "\n".join("    server r%d 127.0.0.1:%d" % (i, p) for i, p in enumerate(backends))
    return f"""
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    timeout http-keep-alive 10s
    retries 3
    option redispatch
frontend callbacks
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
{servers}
"""


class Haproxy:
    def __init__(self, backends):
        self.dir = tempfile.mkdtemp(prefix="cn-rep-haproxy-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(haproxy_config(self.port, backends))
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "haproxy.log"), "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self.log,
                                     stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            expect(self.proc.poll() is None, "haproxy exited: " + self.log_text())
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    c.close()
                    return self
                c.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("haproxy did not pass /readyz within 30 s: " + self.log_text())

    def log_text(self):
        with open(os.path.join(self.dir, "haproxy.log"), "rb") as f:
            return f.read().decode(errors="replace")[-2000:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the deliveries: Interactor's retries, in parallel --------------------------------------

def id_query(n, exec_id, work):
    """Id number n's statement: its own shape (the digits of n as casts) and its id in a comment."""
    digits = "%0*d" % (DIGITS, n)
    casts = ", ".join("'%s'::%s AS d%d" % (d, TYPES[int(d)], j) for j, d in enumerate(digits))
    w = ", (SELECT count(*) FROM generate_series(1, %d)) AS w" % work if work else ""
    # clock_timestamp(): a second execution answers differently, so one that is seen shows
    return "SELECT /* %s */ $1::text AS id, %s%s, clock_timestamp()::text AS at" % (exec_id, casts, w)


class Delivery:
    def __init__(self, exec_id, body, target, heavy=False):
        self.exec_id = exec_id
        self.body = body  # the signed body, the same on every attempt
        self.target = target
        self.heavy = heavy  # its query takes a while at the source
        self.first = None
        self.attempts = []  # (start, end, target, status)
        self.status = None
        self.answer = None
        self.gave_up = False


class Engine:
    """Worker threads that take due deliveries off a heap; a retry is put back with its due
    time, so a delivery waiting out a Retry-After holds no thread. A target marked dead is
    replaced by the load balancer (Interactor only knows the balancer's URL)."""

    def __init__(self, ports, budget, workers=WORKERS):
        self.ports = dict(ports)
        self.budget = budget
        self.dead = set()
        self.heap = []
        self.seq = 0
        self.cv = threading.Condition()
        self.pending = 0
        self.done = 0
        self.inflight = {}  # target -> the deliveries being sent there now
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(workers)]

    def add(self, d, due=None):
        with self.cv:
            self.seq += 1
            self.pending += 1
            heapq.heappush(self.heap, (due or time.monotonic(), self.seq, d))
            self.cv.notify()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.pending and time.monotonic() < deadline:
                self.cv.wait(0.5)
            left = self.pending
            self.pending = -1  # workers return
            self.cv.notify_all()
        for t in self.threads:
            t.join(timeout=90)
        expect(left == 0, "%d deliveries unfinished after %d s" % (left, timeout))

    def mark_dead(self, target):
        with self.cv:
            self.dead.add(target)

    def worker(self):
        conns = {}
        while True:
            with self.cv:
                while True:
                    if self.pending < 0:
                        return
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        _, _, d = heapq.heappop(self.heap)
                        if d.target in self.dead:
                            d.target = "lb"
                        self.inflight.setdefault(d.target, set()).add(d)
                        break
                    self.cv.wait(min(self.heap[0][0] - now, 0.5) if self.heap else 0.5)
            try:
                self.attempt(d, conns)
            finally:
                with self.cv:
                    self.inflight[d.target].discard(d)

    def attempt(self, d, conns):
        port = self.ports[d.target]
        t0 = time.monotonic()
        if d.first is None:
            d.first = t0
        status, headers, raw = None, {}, b""
        hdrs = {"Content-Type": "application/json", "X-Interactor-Signature": sign(SECRET, d.body),
                "X-Interactor-Timestamp": iso(time.time()), "X-Interactor-Request-Id": d.exec_id}
        c, used = conns.pop(port, (None, 0))
        if c is not None and t0 - used > 2:
            c.close()  # the server may be closing it as idle: no false transport error
            c = None
        try:
            if c is None:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/v1/tools/run_query", d.body, hdrs)
            r = c.getresponse()
            raw = r.read()
            status, headers = r.status, dict(r.getheaders())
            if not r.will_close:
                conns[port] = (c, time.monotonic())
            else:
                c.close()
        except (OSError, http.client.HTTPException):
            c.close()
        d.attempts.append((t0, time.monotonic(), d.target, status))
        if status is not None and status not in RETRY:
            d.status, d.answer = status, raw
            self.finish()
            return
        ra = headers.get("Retry-After", "")
        delay = int(ra) if ra.isdigit() else BACKOFF[min(len(d.attempts) - 1, len(BACKOFF) - 1)]
        due = time.monotonic() + delay
        if due - d.first > self.budget:
            d.status, d.answer, d.gave_up = status, raw, True
            self.finish()
            return
        with self.cv:  # still pending: back on the heap, due after the delay
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, d))
            self.cv.notify()

    def finish(self):
        with self.cv:
            self.done += 1
            self.pending -= 1
            self.cv.notify_all()


class Phase:
    """One batch of ids: the deliveries, then what reached the source and what was answered."""
    counter = 0

    def __init__(self, name, run_tag, nids, targets, lb_every=5, work=0, heavy_every=0,
                 heavy_work=0, lead=None):
        """nids ids, each delivered to every target (and every lb_every-th through the balancer
        too); every heavy_every-th id's query counts heavy_work rows, the others work rows; with
        lead, the delivery to that target goes LEAD_S first (it claims the id, mostly)."""
        self.name = name
        self.ids = []
        self.deliveries = []
        for k in range(nids):
            n = Phase.counter
            Phase.counter += 1
            expect(n < 10 ** DIGITS, "too many ids for %d digits" % DIGITS)
            exec_id = "exec_%s_%s_%d" % (run_tag, name, n)
            heavy = bool(heavy_every and k % heavy_every == 0)
            q = id_query(n, exec_id, heavy_work if heavy else work)
            body = json.dumps({"tool_name": "run_query",
                               "parameters": {"source": "pg", "query": q,
                                              "parameters": [exec_id]},
                               "execution_id": exec_id, "room_id": "room_rep",
                               "assistant_id": "asst_rep", "timestamp": iso(time.time())}).encode()
            self.ids.append(exec_id)
            # the three replicas in a different order per id, and the balancer for some
            order = targets[k % 3:] + targets[:k % 3]
            if lb_every and k % lb_every == 0:
                order = order + ["lb"]
            for t in order:
                self.deliveries.append(Delivery(exec_id, body, t, heavy))
        self.lead = lead

    def feed(self, engine, spread=0.0):
        """Hand the deliveries over, an id's side by side (taken at once); with spread, the
        ids' due times evenly over that many seconds, so that traffic outlasts a fault."""
        now = time.monotonic()
        pos = {exec_id: k for k, exec_id in enumerate(self.ids)}
        for d in self.deliveries:
            due = now + spread * pos[d.exec_id] / len(self.ids)
            engine.add(d, due if d.target == self.lead or not self.lead else due + LEAD_S)

    def by_id(self):
        out = {}
        for d in self.deliveries:
            out.setdefault(d.exec_id, []).append(d)
        return out

    def statuses(self):
        hist = {}
        for d in self.deliveries:
            for a in d.attempts:
                k = a[3] if a[3] is not None else "transport"
                hist[k] = hist.get(k, 0) + 1
        return hist


def source_calls(super_dsn, src_oid, run_tag):
    """calls per execution_id at the source, from pg_stat_statements (the id in each entry's
    text); also the entries that name no id of ours."""
    rows = psql(super_dsn, "SELECT calls, query FROM pgss.pg_stat_statements WHERE dbid = %d "
                           "AND query LIKE '%%exec_%s_%%'" % (src_oid, run_tag))
    calls = {}
    for c, q in rows:
        m = COMMENT.search(q)
        expect(m, "an entry without an id: %s" % q[:200])
        calls[m.group(1)] = calls.get(m.group(1), 0) + int(c)
    return calls, len(rows)


def check_answers(phase, allow_second=False, calls=None):
    """Every delivery answered 200, the same bytes for every delivery of an id, and each id run
    once at the source (or, with allow_second, more than once but never two answers seen).
    Returns the ids that ran more than once."""
    problems = []
    twice = []
    for exec_id, ds in phase.by_id().items():
        gave_up = [d for d in ds if d.gave_up]
        if gave_up:
            problems.append("%s: no final answer within the budget (%s)" %
                            (exec_id, [a[3] for a in gave_up[0].attempts][-6:]))
            continue
        st = {d.status for d in ds}
        if st != {200}:
            problems.append("%s: statuses %s: %s" % (exec_id, st, ds[0].answer[:200]))
            continue
        answers = sorted({d.answer for d in ds})
        if len(answers) != 1:
            a, b = answers[0], answers[1]
            at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            problems.append("%s: %d different answers (ran %d times at the source), e.g. ...%s... "
                            "and ...%s..." % (exec_id, len(answers), calls.get(exec_id, 0),
                                              a[max(0, at - 30):at + 20], b[max(0, at - 30):at + 20]))
            continue
        body = json.loads(ds[0].answer)
        if body["result"]["rows"][0][0] != exec_id:
            problems.append("%s: answered %s" % (exec_id, body["result"]["rows"]))
        n = calls.get(exec_id, 0)
        if n == 0:
            problems.append("%s: answered but never reached the source" % exec_id)
        elif n > 1:
            twice.append(exec_id)
            if not allow_second:
                problems.append("%s: ran %d times at the source" % (exec_id, n))
    expect(not problems, "%d problems, first ones:\n  %s" % (len(problems),
                                                           "\n  ".join(problems[:8])))
    return twice


def report(phase, t0, extra=""):
    att = sum(len(d.attempts) for d in phase.deliveries)
    waits = sorted(d.attempts[-1][1] - d.first for d in phase.deliveries)
    log("%s: %d ids, %d deliveries, %d attempts in %.1f s; statuses %s; slowest delivery %.1f s"
        " (p99 %.1f s)%s" % (phase.name, len(phase.ids), len(phase.deliveries), att,
                             time.time() - t0, phase.statuses(), waits[-1],
                             waits[int(0.99 * (len(waits) - 1))], extra))


# ---- the test -------------------------------------------------------------------------------

class Cluster:
    """Three replicas (and HAProxy in front) on one state database."""

    def __init__(self, args, env_extra, state_extra):
        self.args = args
        self.replicas = [Daemon(args, replica_config("CN_REP_STATE_DSN", state_extra),
                                env_extra=env_extra) for _ in range(3)]
        self.lb = None

    def start_together(self):
        for d in self.replicas:
            d.spawn()
        for d in self.replicas:
            d.wait_healthy(timeout=90)
        self.lb = Haproxy([d.port for d in self.replicas]).start()
        return self

    def ports(self):
        p = {"r%d" % i: d.port for i, d in enumerate(self.replicas)}
        p["lb"] = self.lb.port
        return p

    def stop(self):
        if self.lb:
            self.lb.stop()
        errors = []
        for d in self.replicas:
            try:
                d.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(repr(e))
        expect(not errors, "; ".join(errors))


def version_rows(state_dsn):
    """The state database's schema version records: (table, rows) of every table whose name
    says version or migration."""
    tabs = psql(state_dsn, "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                           "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND "
                           "(table_name LIKE '%version%' OR table_name LIKE '%migration%')")
    return {t[0]: psql(state_dsn, "SELECT * FROM %s" % t[0]) for t in tabs}


def test_migrations(ctx, state_dsn, cluster):
    vr = version_rows(state_dsn)
    expect(vr, "no schema version table in the state database")
    for table, rows in vr.items():
        expect(rows, "%s is empty" % table)
        expect(len(rows) == len({tuple(r) for r in rows}), "%s holds a duplicate: %s" % (table, rows))
        keys = [r[0] for r in rows]
        expect(len(keys) == len(set(keys)), "%s: a version recorded twice: %s" % (table, rows))
    # which replica migrated (informative: the store logs it; the others found it done)
    said = [d.log_text().count("migrated to version") for d in ctx[cluster].replicas]
    log("migrations: 3 replicas started at once; %s; 'migrated to version' logged by the "
        "replicas: %s" % (vr, said))


def test_deliveries(ctx):
    ph = Phase("a", ctx["tag"], ctx["nids"], ["r0", "r1", "r2"])
    t0 = time.time()
    eng = Engine(ctx["cluster"].ports(), PLATFORM_BUDGET).start()
    ph.feed(eng)
    eng.wait(600)
    calls, entries = source_calls(ctx["super"], ctx["src_oid"], ctx["tag"])
    report(ph, t0, "; %d source entries" % entries)
    check_answers(ph, calls=calls)


def test_sigkill(ctx):
    """r2 gets each id first, so it holds the claims; one id in four runs a while at the
    source. r2 is killed while it runs one of those: its claims stay running until the stale
    timeout, then another replica takes them over and runs them again."""
    cl = ctx["cluster"]
    ph = Phase("b", ctx["tag"], ctx["nids_small"], ["r0", "r1", "r2"], work=ctx["work"],
               heavy_every=4, heavy_work=ctx["heavy_work"], lead="r2")
    t0 = time.time()
    eng = Engine(cl.ports(), ctx["stale"] + PLATFORM_BUDGET).start()
    ph.feed(eng, spread=10)
    total = len(ph.deliveries)
    time.sleep(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with eng.cv:
            running = [d for d in eng.inflight.get("r2", ()) if d.heavy]
            inflight = len(eng.inflight.get("r2", ()))
        if running:
            break
        time.sleep(0.002)
    cl.replicas[2].proc.send_signal(signal.SIGKILL)
    eng.mark_dead("r2")
    killed_at = time.monotonic()
    log("sigkill: replica r2 killed with %d deliveries in flight (%d of them long queries), "
        "%d of %d deliveries done" % (inflight, len(running), eng.done, total))
    eng.wait(ctx["stale"] + 300)
    calls, entries = source_calls(ctx["super"], ctx["src_oid"], ctx["tag"])
    # ids answered only once the dead replica's claim went stale: taken over
    late = {d.exec_id for d in ph.deliveries
            if d.attempts[-1][1] - killed_at > ctx["stale"] * 0.9}
    twice = check_answers(ph, allow_second=True, calls=calls)
    report(ph, t0, "; %d ids answered only after the stale timeout (taken over); %d ids ran "
                   "twice at the source, their answers all the same: %s" %
           (len(late), len(twice), ", ".join(twice[:5]) or "-"))
    expect(running, "r2 ran no long query when killed: nothing to take over")
    expect(late, "no claim of the killed replica was waited for and taken over")
def test_state_restart(ctx):
    cl, pg2 = ctx["cluster2"], ctx["pg2"]
    # one id in four runs a while: the state database goes down while some of them run, so
    # their answers are due while it is down (they must not be sent unless stored)
    ph = Phase("c", ctx["tag"], ctx["nids_small"], ["r0", "r1", "r2"], work=ctx["work"],
               heavy_every=4, heavy_work=ctx["heavy_work"])
    t0 = time.time()
    eng = Engine(cl.ports(), ctx["stale"] + PLATFORM_BUDGET).start()
    ph.feed(eng, spread=15)
    total = len(ph.deliveries)
    time.sleep(4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with eng.cv:
            running = sum(1 for ds in eng.inflight.values() for d in ds if d.heavy)
        if running:
            break
        time.sleep(0.002)
    down = time.monotonic()
    pg2.halt()
    halted = time.monotonic()
    time.sleep(3)
    pg2.restart()
    up = time.monotonic()
    log("state_restart: state database stopped at %d of %d deliveries, %d of them long "
        "queries in flight (stop took %.1f s), down %.1f s" %
        (eng.done, total, running, halted - down, up - halted))
    eng.wait(600)
    calls, _ = source_calls(ctx["super"], ctx["src_oid"], ctx["tag"])
    during = {}
    for d in ph.deliveries:
        for a in d.attempts:
            if halted <= a[0] and a[1] <= up:
                during[a[3]] = during.get(a[3], 0) + 1
    report(ph, t0, "; attempts begun and answered while it was down: %s" % during)
    hist = ph.statuses()
    odd = {k: v for k, v in hist.items() if k not in (200, 429, 503)}
    expect(not odd, "statuses other than 200, 429 and 503: %s" % odd)
    expect(during.get(503, 0) + during.get(429, 0) > 0,
           "no delivery answered 429 or 503 while the state database was down: %s" % during)
    check_answers(ph, calls=calls)
    late = [d.exec_id for d in ph.deliveries if d.attempts[-1][1] - d.first > PLATFORM_BUDGET]
    expect(not late, "%d deliveries answered only after Interactor's %d s (it gives up): %s" %
           (len(late), PLATFORM_BUDGET, sorted(set(late))[:5]))


def check_config(args, state_extra):
    """check-config's complaint about the replica config with these state keys ('' when none
    about the keys: it cannot connect to the dummy addresses, which is fine here)."""
    d = tempfile.mkdtemp(prefix="cn-rep-probe-")
    probe = os.path.join(d, "c.yaml")
    with open(probe, "w") as f:
        f.write(replica_config("CN_REP_STATE_DSN", state_extra).replace("@WORKDIR@", d))
    env = dict(os.environ, E2E_SECRET=SECRET, CN_REP_STATE_DSN="host=127.0.0.1 port=1 dbname=x",
               CN_REP_SOURCE_DSN="host=127.0.0.1 port=1 dbname=x")
    p = subprocess.run([args.binary, "check-config", "--config", probe], capture_output=True,
                       text=True, env=env, timeout=60)
    shutil.rmtree(d, ignore_errors=True)
    return p.stderr if "unknown key" in p.stderr or "state." in p.stderr else ""


def skip_reason(args):
    if not shutil.which("haproxy"):
        return "haproxy is not installed (apt-get install haproxy)"
    why = check_config(args, "")
    if "state.backend" in why:
        return "this build has no state.backend (the PostgreSQL state store)"
    expect(not why, "check-config refuses the test's config: " + why)
    return None


def stale_setting(args):
    """A short stale timeout where the configuration has one (state.stale_timeout, seconds);
    else the built-in one (120 s), which makes the SIGKILL case wait that long."""
    extra = ", stale_timeout: %d" % STALE_S
    if not check_config(args, extra):
        return extra, STALE_S
    log("state.stale_timeout is not a key of this build: the SIGKILL case waits for the "
        "built-in 120 s")
    return "", 120


def heavy_rows(dsn, seconds):
    """How many rows count(*) of generate_series takes about this long on this server now."""
    n = 2000000
    t0 = time.monotonic()
    psql(dsn, "SELECT count(*) FROM generate_series(1, %d)" % n)
    return max(int(n * seconds / max(time.monotonic() - t0, 0.01)), 100000)


def asan_build(binary):
    p = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return "libasan" in p.stdout


def main():
    args = parse_args()
    why = skip_reason(args)
    if why:
        print("SKIP:", why)
        return SKIP
    superdsn = os.environ.get("CN_TEST_PG_SUPER_DSN")
    if not superdsn or os.environ.get("CN_TEST_PG_STAT_STATEMENTS") != "1":
        print("CN_TEST_PG_SUPER_DSN is not set or its server has no pg_stat_statements: start "
              "PostgreSQL with tests/support/pg.sh (scripts/test.sh does it)")
        print("0 passed, 1 failed")
        return 1
    slow = asan_build(args.binary)
    tag = "%x%x" % (os.getpid(), int(time.time()) & 0xffff)
    ctx = {"tag": tag, "super": superdsn,
           "nids": int(os.environ.get("CN_REPLICAS_IDS", 300 if slow else 1000)),
           "nids_small": 120 if slow else 300, "work": 20000,
           "heavy_work": heavy_rows(with_db(superdsn, "connector_test"), 0.4)}
    src_db, state_db = "cnrep_src_" + tag, "cnrep_state_" + tag
    r = Runner()
    pg2 = None
    try:
        psql(superdsn, "CREATE DATABASE %s" % src_db)
        psql(superdsn, "CREATE DATABASE %s" % state_db)
        ctx["src_oid"] = int(psql(superdsn, "SELECT oid FROM pg_database WHERE datname = '%s'"
                                  % src_db)[0][0])
        state_dsn = with_db(superdsn, state_db)
        env = {"CN_REP_SOURCE_DSN": with_db(os.environ["CN_TEST_PG_DSN"], src_db),
               "CN_REP_STATE_DSN": state_dsn}
        state_extra, ctx["stale"] = stale_setting(args)
        t0 = time.time()
        ctx["cluster"] = Cluster(args, env, state_extra).start_together()
        log("3 replicas and haproxy up in %.1f s (%s)" % (time.time() - t0, ctx["cluster"].ports()))
        r.run("test_migrations", test_migrations, ctx, state_dsn, "cluster")
        r.run("test_deliveries", test_deliveries, ctx)
        r.run("test_sigkill", test_sigkill, ctx)
        r.run("stop_cluster", ctx.pop("cluster").stop)

        pg2 = SecondPg(args).start()
        env2 = dict(env, CN_REP_STATE_DSN=pg2.env["CN_TEST_PG_SUPER_DSN"])
        ctx["pg2"] = pg2
        ctx["cluster2"] = Cluster(args, env2, state_extra).start_together()
        r.run("test_migrations_second_store", test_migrations, ctx,
              pg2.env["CN_TEST_PG_SUPER_DSN"], "cluster2")
        r.run("test_state_restart", test_state_restart, ctx)
        r.run("stop_cluster_2", ctx.pop("cluster2").stop)
    except Exception as e:  # noqa: BLE001 - a failure to set up is a failure
        r.failed += 1
        print("FAIL setup -", repr(e), flush=True)
    finally:
        for k in ("cluster", "cluster2"):
            if k in ctx:
                try:
                    ctx[k].stop()
                except Exception as e:  # noqa: BLE001
                    print("cleanup:", repr(e))
        if pg2:
            pg2.stop()
        for db in (src_db, state_db):
            psql(superdsn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db, check=False)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
