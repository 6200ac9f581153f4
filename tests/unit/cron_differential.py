"""Differential test of the connector's cron parser and next-fire-time code
(src/cron.c, src/tz.c, driven through tests/tools/cron_next.c) against
croniter (Debian's python3-croniter), on thousands of generated expressions.

1. UTC: every generated expression at several start times; the next fire time
   (or the refusal, or "never fires") must be the same as croniter's.
2. Time zones (the system's tz database, read by the connector's own TZif
   reader and by Python's zoneinfo): where no UTC-offset change lies between
   the start and the answer, croniter and the connector must agree exactly.
   Across a DST change croniter's answers depend on its iteration state and
   on the tzinfo library (see docs/schema-refresh.md), so there the answer is
   checked against an oracle built on zoneinfo: a wall time fires at
   datetime(wall, fold=0), i.e. a repeated time at its first occurrence and a
   skipped time with the offset before the change. Start times are drawn near
   each zone's transitions so that these cases are many.
3. Invalid expressions: the ones generated here must be refused by both.

Run with /usr/bin/python3 (Debian's croniter). Exit status 0 when every
comparison agrees; the mismatches are printed otherwise.
"""

import argparse
import datetime
import random
import subprocess
import sys
from zoneinfo import ZoneInfo

try:
    from croniter import croniter, CroniterBadCronError, CroniterBadDateError
except ImportError:  # pragma: no cover - reported as a failure of the test
    print("croniter is not installed: apt-get install python3-croniter (and run /usr/bin/python3)")
    sys.exit(1)

UTC = datetime.timezone.utc
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (min, max, names, name base) per field, as in src/cron.c
FIELDS = [(0, 59, None, 0), (0, 23, None, 0), (1, 31, None, 0), (1, 12, MONTHS, 1), (0, 7, DAYS, 0)]
ZONES = ["Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Australia/Lord_Howe",
         "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "Europe/Dublin", "America/Nuuk",
         "Australia/Sydney", "America/Santiago"]
CRON_MAX_YEARS = 50  # src/cron.h
MACROS = ["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
          "@HOURLY", "@Daily"]


def value_text(rng, field, v):
    lo, hi, names, base = FIELDS[field]
    if names and rng.random() < 0.4 and v - base < len(names):
        name = names[v - base]
        return rng.choice([name, name.upper(), name.capitalize()])
    return str(v)


def item(rng, field):
    lo, hi, names, base = FIELDS[field]
    kind = rng.random()
    if kind < 0.15:
        return "*"
    if kind < 0.3:
        return "*/%d" % rng.randint(1, hi - lo + 2)
    if kind < 0.55:
        return value_text(rng, field, rng.randint(lo, hi))
    a = rng.randint(lo, hi)
    b = rng.randint(a, hi)
    if field == 4 and rng.random() < 0.1 and a > 0:
        text = "%s-%s" % (value_text(rng, field, a), rng.choice(["0", "sun", "SUN"]))
    elif kind < 0.8:
        text = "%s-%s" % (value_text(rng, field, a), value_text(rng, field, b))
    elif kind < 0.92:
        text = "%s-%s/%d" % (value_text(rng, field, a), value_text(rng, field, b), rng.randint(1, 12))
    else:
        return "%s/%d" % (value_text(rng, field, a), rng.randint(1, 15))
    return text


def expression(rng):
    if rng.random() < 0.03:
        return rng.choice(MACROS)
    fields = []
    for f in range(5):
        # most real schedules leave day, month and weekday open
        if f >= 2 and rng.random() < 0.55:
            fields.append("*")
            continue
        n = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        fields.append(",".join(item(rng, f) for _ in range(n)))
    sep = rng.choice([" ", " ", " ", "  ", "\t"])
    return sep.join(fields)


def invalid_expression(rng):
    good = expression(rng)
    while good.startswith("@"):
        good = expression(rng)
    parts = good.split()
    f = rng.randrange(5)
    lo, hi, names, base = FIELDS[f]
    bad = rng.choice([
        str(hi + 1 + rng.randint(0, 50)),
        str(lo - 1) if lo > 0 else "%d-%d" % (hi, lo + 1 if f == 4 else lo),
        "%d-%d" % (hi, lo) if f != 4 else "6-2",
        "*/0",
        "%d/0" % lo,
        "foo",
        "jan" if f in (0, 1, 2, 4) else "mon",
        "1,,2",
        ",5",
        "5,",
        "*-5",
        "1-2-3",
        "-3",
        "1/x",
    ])
    parts[f] = bad
    if rng.random() < 0.1:
        parts = parts[:4] if rng.random() < 0.5 else parts + ["1", "2"]
    return " ".join(parts)


class Tool:
    """The C helper, fed line by line."""

    def __init__(self, path):
        self.p = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)

    def batch(self, queries):
        text = "".join("%s\t%s\t%d\n" % q for q in queries)
        out, _ = self.p.communicate(text, timeout=600)
        lines = out.splitlines()
        if len(lines) != len(queries):
            raise SystemExit("cron_next answered %d lines for %d queries" % (len(lines), len(queries)))
        return lines


def cron_answer(expr, zone, start):
    """croniter's next fire time from a fresh iterator, or 'invalid' / 'never'."""
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    try:
        it = croniter(expr, datetime.datetime.fromtimestamp(start, tz))
        return str(int(it.get_next(float)))
    except CroniterBadDateError:
        return "never"
    except (CroniterBadCronError, ValueError, KeyError, TypeError):
        return "invalid"


def matcher(expr):
    """(day predicate on dates, hours, minutes) from croniter's own expansion of the fields."""
    expanded, _ = croniter.expand(expr)
    sets = []
    for i, e in enumerate(expanded):
        sets.append(None if "*" in e else set(int(x) for x in e))
    dom, dow = sets[2], sets[4]
    if dow is not None and 7 in dow:
        dow = dow | {0}
    day_or = dom is not None and dow is not None

    def day_ok(d):
        if sets[3] is not None and d.month not in sets[3]:
            return False
        d_ok = dom is None or d.day in dom
        w_ok = dow is None or d.isoweekday() % 7 in dow
        return (d_ok or w_ok) if day_or else (d_ok and w_ok)
    hours = sorted(sets[1]) if sets[1] is not None else list(range(24))
    minutes = sorted(sets[0]) if sets[0] is not None else list(range(60))
    return day_ok, hours, minutes


def oracle(expr, zone, start, max_days=3 * 366):
    """The earliest datetime(wall, fold=0) after start, scanning wall-clock days, or None.

    An implementation of its own (day by day, then hour and minute), on croniter's
    expansion of the fields and zoneinfo's placement of wall times."""
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    day_ok, hours, minutes = matcher(expr)
    first = datetime.datetime.fromtimestamp(start, tz).replace(tzinfo=None) - datetime.timedelta(days=1)
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    best = None
    for _ in range(max_days):
        if best is not None and day.replace(tzinfo=UTC).timestamp() - 14 * 3600 > best:
            break
        if day_ok(day):
            for h in hours:
                for m in minutes:
                    t = int(day.replace(hour=h, minute=m, tzinfo=tz, fold=0).timestamp())
                    if t > start and (best is None or t < best):
                        best = t
        day += datetime.timedelta(days=1)
    return None if best is None else str(best)


def offset(zone, t):
    return datetime.datetime.fromtimestamp(t, ZoneInfo(zone)).utcoffset()


def transitions(zone, years):
    """UTC instants (to the hour) where the zone's offset changes in the given years."""
    out = []
    for y in years:
        t = int(datetime.datetime(y, 1, 1, tzinfo=UTC).timestamp())
        end = int(datetime.datetime(y + 1, 1, 1, tzinfo=UTC).timestamp())
        prev = offset(zone, t)
        while t < end:
            t += 3600
            cur = offset(zone, t)
            if cur != prev:
                out.append(t)
                prev = cur
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="path of the cron_next helper")
    ap.add_argument("--count", type=int, default=3000, help="expressions per part")
    ap.add_argument("--seed", type=int, default=20250)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failures = []
    croniter_wrong = []
    stats = {}

    # 1. UTC, and 3. invalid expressions
    queries = []
    for _ in range(args.count):
        expr = expression(rng)
        for _ in range(3):
            start = rng.randint(946684800, 2208988800) + rng.choice([0, 0, rng.randint(0, 59)])
            queries.append((expr, "UTC", start))
    for _ in range(args.count // 3):
        queries.append((invalid_expression(rng), "UTC", rng.randint(946684800, 2208988800)))
    # the day rules croniter is known to follow
    fixed = [("0 0 1 * mon", 1735689600), ("0 0 1-7 * 1", 1735689600), ("0 0 */2 * 1", 1735689600),
             ("0 0 30 2 *", 1735689600), ("0 0 29 2 *", 1735689600), ("0 12 31 * *", 1738368000),
             ("59 23 31 12 *", 1735689599), ("*/7 */5 * * 5-0", 1700000000),
             ("0 0 * * 7", 1735689600), ("0 0 * * sat-sun", 1735689600)]
    queries += [(e, "UTC", s) for e, s in fixed]
    mine = Tool(args.tool).batch(queries)

    def judge(label, expr, zone, start, got, want):
        """croniter's answer must be the connector's, unless the scan shows croniter wrong."""
        got_kind = got.split(" ", 1)[0]
        if got_kind == want:
            return
        ref = None
        if "invalid" not in (got_kind, want) and not got.startswith("zone"):
            ref = oracle(expr, zone, start, max_days=(CRON_MAX_YEARS + 1) * 366) or "never"
        if ref is not None and ref == got_kind:
            stats[label + "_croniter_wrong"] = stats.get(label + "_croniter_wrong", 0) + 1
            if len(croniter_wrong) < 5:
                croniter_wrong.append("%s %r after %d: connector %s = scan, croniter %s"
                                      % (zone, expr, start, got, want))
            return
        failures.append("%s %r after %d: connector %s, croniter %s, scan %s"
                        % (zone, expr, start, got, want, ref))

    for (expr, zone, start), got in zip(queries, mine):
        stats["utc"] = stats.get("utc", 0) + 1
        judge("utc", expr, zone, start, got, cron_answer(expr, zone, start))

    # 2. time zones
    zqueries = []
    years = [2018, 2025, 2031, 2044]
    near = {z: transitions(z, years) for z in ZONES}
    for _ in range(args.count):
        expr = expression(rng)
        zone = rng.choice(ZONES)
        if near[zone] and rng.random() < 0.6:
            start = rng.choice(near[zone]) - rng.randint(0, 2 * 86400)
        else:
            start = rng.randint(946684800, 2208988800)
        zqueries.append((expr, zone, start))
    zmine = Tool(args.tool).batch(zqueries)
    for (expr, zone, start), got in zip(zqueries, zmine):
        want = cron_answer(expr, zone, start)
        o0 = offset(zone, start)
        crossing = any(x.isdigit() and offset(zone, int(x)) != o0 for x in (got, want))
        if not crossing:
            stats["zone"] = stats.get("zone", 0) + 1
            judge("zone", expr, zone, start, got, want)
            continue
        # across a UTC-offset change: zoneinfo's placement is the reference
        ref = oracle(expr, zone, start, max_days=(CRON_MAX_YEARS + 1) * 366) or "never"
        stats["zone_dst"] = stats.get("zone_dst", 0) + 1
        if ref != want:
            stats["zone_dst_croniter_quirks"] = stats.get("zone_dst_croniter_quirks", 0) + 1
        if got != ref:
            failures.append("%s %r after %d: connector %s, zoneinfo scan %s (croniter %s)"
                            % (zone, expr, start, got, ref, want))

    print("comparisons: " + ", ".join("%s=%d" % kv for kv in sorted(stats.items())))
    for w in croniter_wrong:
        print("croniter differs from the scan (croniter wrong): " + w)
    for f in failures[:40]:
        print("MISMATCH " + f)
    print("%d mismatches" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
