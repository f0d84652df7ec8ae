"""Command line of the weir benchmark driver (bench/compare.py): the options, their
checks, and the command line as shown in the report (without the internal --tmpdir).

Python 3 stdlib only.
"""
import argparse
import os
import shlex

import cpulimit
from common import (ALL_PROXIES, BENCH, DEFAULT_PROXIES, ROOT, SCEN_BY_KEY, SCENARIOS,
                    WEIR_CONFIG)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/compare.sh",
        description="Benchmark weir against nginx and HAProxy (see bench/README.md).")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker counts per proxy (default 1,2)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    ap.add_argument("--duration", default="10",
                    help="seconds per wrk run, e.g. 10 or 10s (default 10)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="unrecorded warm-up run per target and scenario, seconds (0: none)")
    ap.add_argument("--wrk-timeout", type=int, default=5,
                    help="wrk --timeout in seconds (default 5)")
    ap.add_argument("--idle-conns", type=int, default=10000,
                    help="connections held open in the idle scenario (default 10000)")
    ap.add_argument("--idle-settle", type=float, default=1.0,
                    help="seconds to wait after opening idle conns before sampling RSS")
    ap.add_argument("--proxies", default=",".join(DEFAULT_PROXIES),
                    help="comma-separated subset of weir,nginx,haproxy,hyper (hyper: opt-in "
                         "hyper 1.x baseline, built from bench/hyper-baseline)")
    ap.add_argument("--scenarios", default=",".join(s["key"] for s in SCENARIOS),
                    help="comma-separated subset of " + ",".join(SCEN_BY_KEY))
    ap.add_argument("--weir-bin", default=None,
                    help="weir binary (default: target/release/weir, built first)")
    ap.add_argument("--weir-config", metavar="FILE",
                    help="also run weir from this config file, as target weir-config, next "
                         "to plain weir (its line marked `# ORIGIN` gets the origin's "
                         "address), e.g. bench/policy.toml for issue #20's policy cost")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo build --release; use the existing binary")
    ap.add_argument("--no-record", action="store_true",
                    help="print the table only; do not prepend it to bench/RESULTS.md")
    ap.add_argument("--results", default=os.path.join(BENCH, "RESULTS.md"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--cpu-limit", type=int, metavar="PCT",
                    help="cap each proxy at PCT %% of one CPU (cgroup), so the proxy and not "
                         "wrk is the bottleneck; direct is not capped")
    ap.add_argument("--json", metavar="FILE", help="also write every round's raw figures here")
    ap.add_argument("--tmpdir", help=argparse.SUPPRESS)  # given by compare.sh
    a = ap.parse_args(argv)
    try:
        a.workers = [int(x) for x in a.workers.split(",") if x.strip()]
        a.duration = int(a.duration.rstrip("s"))
    except ValueError:
        ap.error("--workers takes integers like 1,2; --duration takes whole seconds")
    if not a.workers or min(a.workers) < 1 or a.rounds < 1 or a.duration < 1:
        ap.error("workers, rounds and duration must be >= 1")
    if a.cpu_limit is not None:
        try:
            cpulimit.check(a.cpu_limit)
        except ValueError as e:
            ap.error(str(e))
    a.proxies = [p.strip() for p in a.proxies.split(",") if p.strip()]
    bad = [p for p in a.proxies if p not in ALL_PROXIES]
    if bad:
        ap.error("unknown proxies: %s" % ",".join(bad))
    keys = [k.strip() for k in a.scenarios.split(",") if k.strip()]
    bad = [k for k in keys if k not in SCEN_BY_KEY]
    if bad:
        ap.error("unknown scenarios: %s" % ",".join(bad))
    a.scenarios = [s for s in SCENARIOS if s["key"] in keys]
    if a.weir_config:
        if not os.path.isfile(a.weir_config):
            ap.error("--weir-config: no such file: %s" % a.weir_config)
        # Right after plain weir, so the two alternate with nothing between them.
        at = a.proxies.index("weir") + 1 if "weir" in a.proxies else 0
        a.proxies.insert(at, WEIR_CONFIG)
    target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    if a.weir_bin is None:
        a.weir_bin = os.path.join(target_dir, "release", "weir")
    elif not a.no_build:
        a.no_build = True  # an explicit binary is used as is
    shown, skip = [], False
    for x in argv:                       # hide the internal --tmpdir
        if skip:
            skip = False
        elif x == "--tmpdir":
            skip = True
        elif not x.startswith("--tmpdir="):
            shown.append(x)
    a.cmdline = " ".join(["bench/compare.sh"] + [shlex.quote(x) for x in shown])
    return a
