"""Rendering and recording for the weir benchmark driver (bench/compare.py): one line
per round for the log, the markdown tables (medians over rounds, ratios to the best of
nginx/HAProxy), the header with machine and versions, and prepending the section to
bench/RESULTS.md.

Python 3 stdlib only.
"""
import os
import re
import statistics

import cpulimit
from common import DIRECT, EXTRAS, PEERS, ROOT, WEIR_CONFIG, run_out, which


def fmt_round(r):
    if "error" in r:
        return "ERROR " + r["error"]
    if "held" in r:
        return "held %d/%d still open, failed %d, RSS %.1f -> %.1f MiB (%.2f KiB/conn)" % (
            r["still_open"], r["held"], r["failed"], r["rss_before_mib"], r["rss_held_mib"],
            r["kib_per_conn"] or 0.0)
    return ("%9.0f req/s  p50 %.2f ms  p99 %.2f ms  non2xx %d  sockerr %d  "
            "cpu %.1f us/req  rss %.1f MiB  idle %.1f%%" % (
                r["rps"], r["p50_ms"], r["p99_ms"], r["non2xx"], r["sock_err"],
                r["cpu_us_per_req"] or 0.0, r["peak_rss_mib"], r.get("idle_pct", 0.0)))


# ------------------------------------------------------------------- report

# metric -> (label, higher_is_better, formatter, aggregate)
def _ms(v):
    return "%.2f" % v if v < 10 else "%.1f" % v


WRK_COLS = [
    ("rps", "req/s", True, lambda v: "{:,.0f}".format(v), "median"),
    ("p50_ms", "p50 ms", False, _ms, "median"),
    ("p99_ms", "p99 ms", False, _ms, "median"),
    ("non2xx", "non-2xx", None, lambda v: "%d" % v, "sum"),
    ("sock_err", "sock err", None, lambda v: "%d" % v, "sum"),
    ("cpu_us_per_req", "CPU µs/req", False, lambda v: "%.1f" % v, "median"),
    ("peak_rss_mib", "peak RSS MiB", False, lambda v: "%.1f" % v, "median"),
    ("idle_pct", "machine idle %", None, lambda v: "%.1f" % v, "median"),
]
IDLE_COLS = [
    ("still_open", "conns held", None, lambda v: "%d" % v, "min"),
    ("failed", "failed", None, lambda v: "%d" % v, "sum"),
    ("rss_before_mib", "RSS before MiB", False, lambda v: "%.1f" % v, "median"),
    ("rss_held_mib", "RSS held MiB", False, lambda v: "%.1f" % v, "median"),
    ("kib_per_conn", "KiB/conn", False, lambda v: "%.2f" % v, "median"),
    ("peak_rss_mib", "peak RSS MiB", False, lambda v: "%.1f" % v, "median"),
]


def aggregate(rounds, key, how):
    vals = [r[key] for r in rounds if "error" not in r and r.get(key) is not None]
    if not vals:
        return None
    if how == "sum":
        return sum(vals)
    if how == "min":
        return min(vals)
    return statistics.median(vals)


def table(res, cols, order, skipped):
    head = ["proxy"] + [c[1] for c in cols]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
    agg = {t: {c[0]: aggregate(res.get(t, []), c[0], c[4]) for c in cols} for t in order}
    best = {}
    for key, _, higher, _, _ in cols:
        if higher is None:
            continue
        peer_vals = [agg[p][key] for p in PEERS if p in agg and agg[p][key] is not None]
        if peer_vals:
            best[key] = max(peer_vals) if higher else min(peer_vals)
    for t in order:
        rounds = res.get(t)
        if t in skipped:
            lines.append("| %s | skipped: %s |%s" % (t, skipped[t], " |" * (len(cols) - 1)))
            continue
        if t in EXTRAS and t not in res:
            lines.append("| %s | not run: single-threaded baseline |%s" % (t, " |" * (len(cols) - 1)))
            continue
        if not rounds or all("error" in r for r in rounds):
            why = "no data" if not rounds else rounds[-1]["error"][:80]
            lines.append("| %s | failed: %s |%s" % (t, why.replace("|", "/"),
                                                    " |" * (len(cols) - 1)))
            continue
        cells = [t + ("" if len(rounds) == sum("error" not in r for r in rounds)
                      else " (%d/%d rounds ok)" % (sum("error" not in r for r in rounds),
                                                   len(rounds)))]
        for key, _, higher, fmt, _ in cols:
            v = agg[t][key]
            if v is None:
                cells.append("—")
                continue
            cell = fmt(v)
            b = best.get(key)
            if higher is not None and b:
                cell += " (%.2f×)" % (v / b)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(bench, meta):
    a = bench.a
    order = [DIRECT] + [p for p in a.proxies]
    out = []
    for workers in a.workers:
        out.append("### %d worker%s per proxy (`-w %d` / `worker_processes %d` / `nbthread %d`)"
                   % (workers, "" if workers == 1 else "s", workers, workers, workers))
        out.append("")
        for scen in a.scenarios:
            res = bench.results.get(workers, {}).get(scen["key"], {})
            title = scen["title"]
            if scen.get("idle"):
                title = "%s idle keep-alive conns held open (RSS only)" % "{:,}".format(
                    a.idle_conns)
            out.append("**%s** — `%s`" % (title, scen["key"]))
            out.append("")
            out.append(table(res, IDLE_COLS if scen.get("idle") else WRK_COLS, order,
                             bench.skipped))
            out.append("")
            versus = config_vs_plain(res, a.weir_config)
            if versus and not scen.get("idle"):
                out.extend([versus, ""])
    if bench.notes:
        out.append("Problems during the run:")
        out.append("")
        out.extend("- " + n for n in bench.notes)
        out.append("")
    return "\n".join(out)


def config_vs_plain(res, config):
    """One line comparing weir-config with plain weir (same binary, same run): medians'
    ratio and the median of the per-round ratios of CPU µs/request and req/s."""
    pairs = [(p, c) for p, c in zip(res.get("weir", []), res.get(WEIR_CONFIG, []))
             if "error" not in p and "error" not in c and p.get("cpu_us_per_req")
             and c.get("cpu_us_per_req")]
    if not pairs:
        return None
    parts = []
    for key, label in (("cpu_us_per_req", "CPU µs/req"), ("rps", "req/s")):
        plain = statistics.median(p[key] for p, _ in pairs)
        conf = statistics.median(c[key] for _, c in pairs)
        per_round = statistics.median(c[key] / p[key] for p, c in pairs)
        parts.append("%s %.3f (per-round median %.3f)" % (label, conf / plain, per_round))
    return "`%s` (`%s`) / `weir`, %d rounds: %s" % (
        WEIR_CONFIG, config, len(pairs), "; ".join(parts))


def header(bench, meta):
    a = bench.a
    lines = [
        "## %s — weir %s" % (meta["date"], meta["weir"]),
        "",
        "- date: `%s`" % meta["date"],
        "- machine: nproc %s, CPU `%s`, kernel %s" % (meta["nproc"], meta["cpu"],
                                                       meta["kernel"]),
        "- versions: nginx `%s`, HAProxy `%s`, wrk `%s`, weir `%s`" % (
            meta["nginx"], meta["haproxy"], meta["wrk"], meta["weir"]),
        "- parameters: workers %s, rounds %d, duration %ds (+%ds warm-up), wrk timeout %ds, "
        "idle conns %d, fd limit %d" % (
            ",".join(map(str, a.workers)), a.rounds, a.duration, a.warmup, a.wrk_timeout,
            a.idle_conns, bench.nofile) + (
            ", **each proxy capped at %d%% of one CPU** (cgroup, %d ms period)" % (
                a.cpu_limit, cpulimit.PERIOD_US // 1000) if a.cpu_limit else ""),
        "- command: `%s`" % meta["cmdline"],
        "- figures are medians over rounds (error counts: sums); `(x×)` = ratio to the best "
        "of nginx/HAProxy in this run (req/s: higher is better; everything else: lower is "
        "better); `direct` = wrk against the origin nginx, no proxy",
    ]
    for name, why in bench.skipped.items():
        lines.append("- **%s skipped**: %s" % (name, why))
    return "\n".join(lines) + "\n"


def collect_meta(bench):
    a = bench.a
    date = run_out(["date", "-u"])
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nginx_v = run_out([bench.bins["nginx"], "-v"]).replace("nginx version: ", "")
    hp = bench.bins.get("haproxy") or which("haproxy")
    haproxy_v = run_out([hp, "-v"]).splitlines()[0] if hp else "not installed"
    haproxy_v = haproxy_v.replace("HAProxy version ", "").split(" - ")[0]
    wrk_v = run_out([bench.bins["wrk"], "-v"]).splitlines()[0]
    wrk_v = wrk_v.split(" [")[0].replace("wrk ", "")
    rev = run_out(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{7,40}", rev):
        rev = "no-commit"
    dirty = run_out(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml",
                     "Cargo.lock"])
    if dirty and not dirty.startswith("unavailable"):
        rev += "-dirty"
    return dict(date=date, cpu=cpu, nproc=os.cpu_count(), kernel=os.uname().release,
                nginx=nginx_v, haproxy=haproxy_v, wrk=wrk_v, weir=rev,
                cmdline=a.cmdline)


def record(path, section):
    title = "# weir benchmark results\n"
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if old.startswith("# "):
        first, _, rest = old.partition("\n")
        title = first + "\n"
        old = rest.lstrip("\n")
    text = title + "\n" + section.rstrip("\n") + "\n"
    if old:
        text += "\n" + old
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
