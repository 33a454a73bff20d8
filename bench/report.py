#!/usr/bin/env python3
"""The benchmark's numbers (bench/run.sh).

  report.py sample WRK_OUTPUT SCENARIO BODY SIDE ROUND CPU_BEFORE CPU_AFTER
                   MACHINE_BEFORE MACHINE_AFTER HZ RSS_KIB [REDIS_BEFORE REDIS_AFTER]
      one wrk run -> one tab-separated sample line on stdout; CPU_* are
      "USER SYSTEM" ticks of the proxy, MACHINE_* "BUSY IDLE" ticks of all cores,
      REDIS_* (scenario 6) "USER SYSTEM" ticks of redis-server (else the
      redis_us_per_req column is empty)
  report.py table SAMPLES_TSV --machine M --versions V --load L --settings S
                  --cores N [--notes N] [--idle IDLE_TSV]
      every sample -> the markdown results (table, targets, CPU budget, raw samples);
      IDLE_TSV: lines "side count rss_before rss_with rss_after bytes_each"
      from idle_connections.py -> the idle-connection memory table
"""

import argparse
import re
import statistics
import sys

# Targets of issue 10, by scenario: (metric, comparison, bound).
# "ratio" bounds compare tailgate / peer; "abs" bounds compare tailgate's value.
TARGETS = {
    "pass-through": [("rps", "ratio>=", 1.2), ("p99", "ratio<=", 1.0),
                     ("cpu", "ratio<=", 1.0), ("rss", "abs<=", 64.0)],
    "tls": [("rps", "ratio>=", 1.2), ("p99", "ratio<=", 1.0),
            ("cpu", "ratio<=", 1.0), ("rss", "abs<=", 64.0)],
    "cache": [("rps", "ratio>=", 1.2), ("cpu", "ratio<=", 1.0), ("rss", "abs<=", 64.0)],
    "plugins": [("rps", "ratio>=", 0.9)],
    # Issue 26: the plugin-free route against nginx, in scenario 4's rounds.
    "plugin-free": [("rps", "ratio>=", 1.0)],
}
METRICS = [
    ("rps", "requests/s"),
    ("p50", "p50 latency (ms)"),
    ("p99", "p99 latency (ms)"),
    ("cpu", "proxy CPU per request (µs)"),
    ("rss", "proxy peak RSS (MiB)"),
]
TITLES = {
    "pass-through": "1 pass-through",
    "cache": "2 cache hits",
    "tls": "3 TLS",
    "plugins": "4 plugin overhead",
    "plugin-free": "4 plugin-free vs. nginx",
    "ban": "5 ban check",
    "state": "6 state backends",
}
# Scenario 6's sides: Tailgate alone, by [state] backend; the first is the base.
STATE_SIDES = [("local", '`backend = "local"`'),
               ("redis-exact", '`"redis"`, `consistency = "exact"`'),
               ("redis-sync", '`"redis"`, `consistency = "sync"`, `sync_interval = "1s"`')]
# Issue 25: a ban check on every request must stay cheap, "a few µs at most".
BAN_COST_TARGET_US = 5.0


def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def sample(args):
    path, scenario, body, side, rnd, before, after, m_before, m_after, hz, rss = args[:11]
    text = open(path).read()
    lat = {
        m.group(1): ms(m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    done = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not done or not rps or "50" not in lat or "99" not in lat:
        sys.exit(f"report.py: cannot read wrk's output in {path}:\n{text}")
    total = int(done.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(int(x) for x in errs.groups()) if errs else 0
    per_req = 1e6 / int(hz) / max(total, 1)
    (u0, s0), (u1, s1) = (map(int, t.split()) for t in (before, after))
    (b0, i0), (b1, i1) = (map(int, t.split()) for t in (m_before, m_after))
    user_us, sys_us = (u1 - u0) * per_req, (s1 - s0) * per_req
    idle = (i1 - i0) / max((b1 - b0) + (i1 - i0), 1)
    redis = ""
    if len(args) == 13:
        (r0u, r0s), (r1u, r1s) = (map(int, t.split()) for t in args[11:])
        redis = f"{((r1u - r0u) + (r1s - r0s)) * per_req:.2f}"
    print("\t".join(str(x) for x in (
        scenario, body, side, rnd, f"{float(rps.group(1)):.0f}", f"{lat['50']:.3f}",
        f"{lat['99']:.3f}", f"{user_us + sys_us:.2f}", rss, total, bad.group(1) if bad else 0,
        errors, f"{user_us:.2f}", f"{sys_us:.2f}", f"{(b1 - b0) * per_req:.2f}",
        f"{100 * idle:.1f}", redis)))


def load(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return rows


def summary(rows):
    """Median of the rounds (peak RSS: the largest seen)."""
    return {
        "rps": statistics.median(float(r["rps"]) for r in rows),
        "rps_min": min(float(r["rps"]) for r in rows),
        "rps_max": max(float(r["rps"]) for r in rows),
        "p50": statistics.median(float(r["p50_ms"]) for r in rows),
        "p99": statistics.median(float(r["p99_ms"]) for r in rows),
        "cpu": statistics.median(float(r["cpu_us_per_req"]) for r in rows),
        "rss": max(int(r["peak_rss_kib"]) for r in rows) / 1024.0,
        "user": statistics.median(float(r["user_us_per_req"]) for r in rows),
        "sys": statistics.median(float(r["sys_us_per_req"]) for r in rows),
        "machine": statistics.median(float(r["machine_us_per_req"]) for r in rows),
        "idle": statistics.median(float(r["idle_pct"]) for r in rows),
    }


def fmt(metric, s):
    v = s[metric]
    if metric == "rps":
        return f"{v:,.0f} ({s['rps_min']:,.0f}–{s['rps_max']:,.0f})"
    if metric == "rss":
        return f"{v:.1f}"
    if metric == "cpu":
        return f"{v:.1f}"
    return f"{v:.3f}"


def verdict(metric, scenario, peer, tg):
    for m, how, bound in TARGETS.get(scenario, []):
        if m != metric:
            continue
        kind, op = how[:-2], how[-2:]
        value = tg[metric] / peer[metric] if kind == "ratio" else tg[metric]
        ok = value >= bound if op == ">=" else value <= bound
        what = "×" if kind == "ratio" else " MiB"
        return f"{'≥' if op == '>=' else '≤'} {bound:g}{what}: {'met' if ok else '**missed**'}"
    return ""


def budget(rows, order, cores):
    """Where each run's CPU went, and how much proxy CPU the throughput
    target leaves once wrk and the upstream have taken theirs."""
    out = ["", "## Where the CPU went", "",
           "Per request, median of the rounds: the proxy's user and system time, the rest of "
           "the machine (wrk, the upstream, the kernel's softirqs: every core's busy time minus "
           "the proxy's) and the share of the cores left idle. **Budget**: the proxy CPU per "
           f"request at which the throughput target could be met if all {cores} cores were busy: "
           f"{cores} s of CPU per second / (target × the peer's req/s) − the rest of the "
           "machine as measured with Tailgate.", "",
           "| scenario | body | side | req/s | proxy user µs | proxy sys µs | rest µs | idle | "
           "budget for the target |",
           "|---|---|---|---|---|---|---|---|---|"]
    for scenario, body in order:
        picked = [r for r in rows if r["scenario"] == scenario and r["body"] == body]
        sides = list(dict.fromkeys(r["side"] for r in picked))
        stats = {side: summary([r for r in picked if r["side"] == side]) for side in sides}
        peer = next(side for side in sides if side != "tailgate")
        target = next((b for m, how, b in TARGETS.get(scenario, []) if m == "rps"), None)
        for side in sides:
            st = stats[side]
            rest = st["machine"] - st["user"] - st["sys"]
            cell = ""
            if side == "tailgate" and target:
                room = cores * 1e6 / (target * stats[peer]["rps"]) - rest
                cell = (f"{room:.1f} µs at {target:g}× {peer} (Tailgate used "
                        f"{st['user'] + st['sys']:.1f})")
            out.append(f"| {TITLES.get(scenario, scenario)} | {body} | {side} | {st['rps']:,.0f} | "
                       f"{st['user']:.1f} | {st['sys']:.1f} | {rest:.1f} | {st['idle']:.0f} % | "
                       f"{cell} |")
    return out


def ban_cost(rows, order):
    """Scenario 5: the ban plugin's cost per request, the CPU per request
    with it minus without it (the same route, no plugins)."""
    bodies = [body for scenario, body in order if scenario == "ban"]
    if not bodies:
        return []
    out = ["", "## Ban check cost (scenario 5)", "",
           "Tailgate with the ban plugin alone (one jail watching `^/user/login` for 401/403: "
           "every request pays the check in on-request and the on-log observer, none is "
           "banned) against the same route with no plugins. Cost = proxy CPU per request "
           "with the plugin − without (medians of the rounds); target (issue 25): a few µs "
           f"at most, read as ≤ {BAN_COST_TARGET_US:g} µs.", "",
           "| body | req/s without | req/s with | with / without | CPU µs/req without | "
           "CPU µs/req with | ban check cost (µs/req) | target |",
           "|---|---|---|---|---|---|---|---|"]
    for body in bodies:
        picked = [r for r in rows if r["scenario"] == "ban" and r["body"] == body]
        base_name = next(r["side"] for r in picked if r["side"] != "tailgate")
        base = summary([r for r in picked if r["side"] == base_name])
        ban = summary([r for r in picked if r["side"] == "tailgate"])
        cost = ban["cpu"] - base["cpu"]
        ok = "met" if cost <= BAN_COST_TARGET_US else "**missed**"
        out.append(f"| {body} | {fmt('rps', base)} | {fmt('rps', ban)} | "
                   f"{ban['rps'] / base['rps']:.2f} | {base['cpu']:.1f} | {ban['cpu']:.1f} | "
                   f"{cost:.1f} | ≤ {BAN_COST_TARGET_US:g} µs: {ok} |")
    return out


def state_cost(rows, order):
    """Scenario 6: each [state] backend's cost per request, the Redis runs'
    numbers minus the local run's (the same route, the rate-limit plugin)."""
    bodies = [body for scenario, body in order if scenario == "state"]
    if not bodies:
        return []
    out = ["", "## State backends (scenario 6): Tailgate only", "",
           "Tailgate alone: nginx has no equivalent here (its `limit_req` zones live in "
           "one machine's shared memory), so there is no peer column. The route with the "
           "rate-limit plugin alone (scenario 1's per-client-IP limit, never rejecting) run "
           "three ways at once, measured in turn: " +
           "; ".join(f"**{side}**: {what}" for side, what in STATE_SIDES) +
           ". Both Redis runs use one redis-server on loopback (no persistence), each "
           "with its own key prefix. CPU = Tailgate's user+system time / requests; Redis "
           "CPU = redis-server's over the same run / the same requests (the idle sync "
           "instance's once-a-second round, a few commands, falls in every run). **Cost** = the "
           "Redis mode's value − local's (medians of the rounds): the price per request "
           "of that mode.", "",
           "| body | backend | req/s | p99 (ms) | Tailgate CPU µs/req | Redis CPU µs/req | "
           "Δ req/s vs local | Δ p99 vs local (ms) | Δ Tailgate CPU vs local (µs/req) | "
           "Δ Tailgate + Redis CPU vs local (µs/req) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for body in bodies:
        picked = [r for r in rows if r["scenario"] == "state" and r["body"] == body]
        sides = list(dict.fromkeys(r["side"] for r in picked))
        stats = {}
        for side in sides:
            st = summary([r for r in picked if r["side"] == side])
            vals = [float(r["redis_us_per_req"]) for r in picked
                    if r["side"] == side and r.get("redis_us_per_req")]
            st["redis"] = statistics.median(vals) if vals else 0.0
            stats[side] = st
        base = stats.get("local") or stats[sides[0]]
        for side in sides:
            st = stats[side]
            if st is base:
                deltas = "— | — | — | —"
            else:
                deltas = (f"{st['rps'] - base['rps']:+,.0f} ({st['rps'] / base['rps'] - 1:+.0%}) | "
                          f"{st['p99'] - base['p99']:+.3f} | {st['cpu'] - base['cpu']:+.1f} | "
                          f"{(st['cpu'] + st['redis']) - (base['cpu'] + base['redis']):+.1f}")
            out.append(f"| {body} | {side} | {fmt('rps', st)} | {st['p99']:.3f} | "
                       f"{st['cpu']:.1f} | {st['redis']:.1f} | {deltas} |")
    return out


def idle_table(path):
    """RSS with idle keep-alive connections, per side (idle_connections.py)."""
    if not path:
        return []
    lines = [l.split("\t") for l in open(path).read().splitlines() if l.strip()]
    if not lines:
        return []
    out = ["", "## Idle keep-alive connections", "",
           "RSS of every proxy process before, with the connections open (one "
           "request each, then idle), and 10 s after they closed.", "",
           "| side | connections | RSS before (MiB) | with (MiB) | after (MiB) | per connection (KiB) |",
           "|---|---|---|---|---|---|"]
    for side, count, before, with_open, after, each in lines:
        out.append(f"| {side} | {count} | {int(before) / 1024:.1f} | {int(with_open) / 1024:.1f} | "
                   f"{int(after) / 1024:.1f} | {int(each) / 1024:.1f} |")
    return out


def compared(rows, scenario, body, peer_name, side, title):
    """The table rows of `side` against `peer_name` in one scenario and body."""
    of = lambda name: summary([r for r in rows if r["scenario"] == scenario
                               and r["body"] == body and r["side"] == name])
    peer, tg = of(peer_name), of(side)
    out = []
    for metric, label in METRICS:
        ratio = tg[metric] / peer[metric] if peer[metric] else float("nan")
        out.append(f"| {TITLES.get(title, title)} | {body} | {label} | {peer_name} | "
                   f"{fmt(metric, peer)} | {fmt(metric, tg)} | {ratio:.2f} | "
                   f"{verdict(metric, title, peer, tg)} |")
    return out


def table(args):
    rows = load(args.samples)
    order = []
    for r in rows:
        key = (r["scenario"], r["body"])
        if key not in order:
            order.append(key)
    out = ["# Tailgate vs. nginx", ""]
    out.append(f"- Machine: {args.machine}")
    out.append(f"- Versions: {args.versions}")
    out.append(f"- Load: {args.load}")
    out.append(f"- Settings: {args.settings}")
    out.append("- Numbers: median of the rounds (req/s: median, and min–max of the rounds); "
               "CPU = user+system time of every proxy process over a run / requests served; "
               "peak RSS = VmHWM of every proxy process (nginx: master + worker).")
    out.append("")
    out.append("| scenario | body | metric | peer | peer value | tailgate | tailgate / peer | target |")
    out.append("|---|---|---|---|---|---|---|---|")
    for scenario, body in order:
        if scenario == "state":
            out.append(f"| {TITLES['state']} | {body} | (Tailgate only: nginx has no equivalent) "
                       "| — | — | see [State backends](#state-backends-scenario-6-tailgate-only) "
                       "below | — | |")
            continue
        sides = [r["side"] for r in rows if r["scenario"] == scenario and r["body"] == body]
        peer_name = next(s for s in sides if s != "tailgate")
        out += compared(rows, scenario, body, peer_name, "tailgate", scenario)
        if scenario == "plugins" and "nginx" in sides:
            # Scenario 4's third side: the plugin-free route against nginx
            # (scenario 1's config), in the same rounds.
            out += compared(rows, scenario, body, "nginx", peer_name, "plugin-free")
    out += ban_cost(rows, order)
    out += state_cost(rows, order)
    out += budget(rows, order, args.cores)
    out += idle_table(args.idle)
    bad = [r for r in rows if int(r["non2xx"]) or int(r["errors"])]
    out.append("")
    if bad:
        out.append(f"**{len(bad)} runs had non-2xx answers or socket errors** (see the samples).")
    else:
        out.append("Every run: no non-2xx answers, no socket errors.")
    for note in (args.notes or "").splitlines():
        if note.strip():
            out.append(f"\n{note}")
    out.append("")
    out.append("<details><summary>Every sample</summary>\n")
    cols = ["scenario", "body", "side", "round", "rps", "p50_ms", "p99_ms",
            "cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "machine_us_per_req",
            "idle_pct", "peak_rss_kib", "requests", "non2xx", "errors", "redis_us_per_req"]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "---|" * len(cols))
    for r in rows:
        out.append("| " + " | ".join(r.get(c, "") for c in cols) + " |")
    out.append("\n</details>")
    print("\n".join(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "sample" and len(sys.argv) in (13, 15):
        sample(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        p = argparse.ArgumentParser(prog="report.py table")
        p.add_argument("samples")
        for flag in ("--machine", "--versions", "--load", "--settings"):
            p.add_argument(flag, required=True)
        p.add_argument("--cores", type=int, required=True)
        p.add_argument("--notes", default="")
        p.add_argument("--idle", default="")
        table(p.parse_args(sys.argv[2:]))
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
