#!/usr/bin/env python3
"""weir benchmark driver: weir vs nginx vs HAProxy in front of one nginx origin.

Normally started by bench/compare.sh (which installs the tools, raises the fd limit,
creates the temp dir and cleans up). See bench/README.md. Python 3 stdlib only.
Everything listens on and talks to 127.0.0.1 only.
"""
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import cpulimit
from cli import parse_args
from common import (BENCH, CLK_TCK, DIRECT, EXTRAS, HOST, LARGE_SIZE, ROOT, SCENARIOS,
                    WEIR_CONFIG, WRK_DIR, Fatal, free_port, log, render, tail, wait_ready,
                    which)
from procs import (Procs, RssSampler, cpu_ticks, machine_ticks, proc_tree, reset_hwm,
                   status_kb)
from report import collect_meta, fmt_round, header, record, report


# ------------------------------------------------------------------ targets

class Target:
    """A thing wrk is pointed at: the origin itself ("direct") or a proxy."""

    def __init__(self, name, port, proc, logpath):
        self.name, self.port, self.proc, self.logpath = name, port, proc, logpath
        self.dead = None  # reason once it stopped working
        self.limit = None  # its cgroup under --cpu-limit

    def pids(self):
        return proc_tree(self.proc.pid)


class Bench:
    def __init__(self, args, tmp, procs):
        self.a, self.tmp, self.procs = args, tmp, procs
        self.used_ports = set()
        self.bins = {}
        self.skipped = {}    # proxy -> reason (whole run)
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.user_line = "user root;" if os.geteuid() == 0 else ""
        self.results = {}    # workers -> scenario key -> target -> [round dicts]
        self.notes = []      # per-scenario problems, for the report

    # ---- tools
    def find_tools(self):
        for tool in ("wrk", "nginx"):
            self.bins[tool] = which(tool)
            if not self.bins[tool]:
                raise Fatal("%s not found (compare.sh installs it with apt-get install -y "
                            "nginx-light haproxy wrk)" % tool)
        for name in self.a.proxies:
            if name in ("weir", WEIR_CONFIG):
                path = self.a.weir_bin
                if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                    self.skip(name, "binary %s not found (build it with cargo build --release)"
                              % path)
                else:
                    self.bins[name] = path
            elif name == "hyper":
                path = self.build_hyper()
                if path:
                    self.bins["hyper"] = path
                else:
                    self.skip(name, "bench/hyper-baseline did not build")
            elif name == "nginx":
                self.bins["nginx-proxy"] = self.bins["nginx"]
            elif name == "haproxy":
                path = which("haproxy")
                if path:
                    self.bins["haproxy"] = path
                else:
                    self.skip(name, "haproxy binary not found")

    def build_hyper(self):
        """Builds the hyper baseline in its own target dir; returns the binary or None."""
        target = os.path.join(ROOT, "target", "hyper-baseline")
        manifest = os.path.join(BENCH, "hyper-baseline", "Cargo.toml")
        rc = subprocess.call(["cargo", "build", "--release", "--manifest-path", manifest,
                              "--target-dir", target])
        path = os.path.join(target, "release", "hyper-baseline")
        return path if rc == 0 and os.path.isfile(path) else None

    def skip(self, name, why):
        self.skipped[name] = why
        log("*** SKIPPING %s: %s" % (name, why))

    def active_proxies(self):
        return [p for p in self.a.proxies if p not in self.skipped]

    # ---- origin
    def start_backend(self):
        prefix = os.path.join(self.tmp, "backend")
        os.makedirs(os.path.join(prefix, "www"), exist_ok=True)
        with open(os.path.join(prefix, "www", "1m.bin"), "wb") as f:
            f.write(os.urandom(LARGE_SIZE))
        with open(os.path.join(prefix, "www", "ok.txt"), "wb") as f:
            f.write(b"ok\n")
        self.backend_ports = {k: free_port(self.used_ports) for k in ("small", "large", "post")}
        conf = render("backend-nginx.conf.in", os.path.join(prefix, "nginx.conf"), dict(
            USER_LINE=self.user_line, NOFILE=self.nofile, PREFIX=prefix,
            PORT_SMALL=self.backend_ports["small"], PORT_LARGE=self.backend_ports["large"],
            PORT_POST=self.backend_ports["post"]))
        logpath = os.path.join(prefix, "stderr.log")
        proc = self.procs.spawn([self.bins["nginx"], "-e", "stderr", "-p", prefix + "/",
                                 "-c", conf], logpath)
        self.backend = Target(DIRECT, None, proc, logpath)
        for key, port in self.backend_ports.items():
            scen = next(s for s in SCENARIOS if s["backend"] == key)
            why = wait_ready(proc, port, scen)
            if why:
                raise Fatal("backend nginx (port %d): %s\n%s" % (port, why, tail(logpath)))
        self.check_post_reads_body()
        log("backend nginx pid %d, ports small=%d large=%d post=%d" % (
            proc.pid, self.backend_ports["small"], self.backend_ports["large"],
            self.backend_ports["post"]))

    def check_post_reads_body(self):
        """The POST origin must not answer before the whole body has arrived."""
        s = socket.create_connection((HOST, self.backend_ports["post"]), timeout=2)
        try:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + b"x" * 512)
            s.settimeout(0.5)
            try:
                early = s.recv(100)
            except socket.timeout:
                early = b""
            if early:
                raise Fatal("POST origin answered before reading the body: %r" % early[:40])
            s.settimeout(2)
            s.sendall(b"x" * 512)
            resp = s.recv(100)
            if not resp.startswith(b"HTTP/1.1 200"):
                raise Fatal("POST origin: unexpected answer %r" % resp[:40])
        finally:
            s.close()

    # ---- proxies
    def start_proxy(self, name, workers, backend_port, scen):
        port = free_port(self.used_ports)
        prefix = os.path.join(self.tmp, "w%d-%s-%s" % (workers, scen["key"], name))
        os.makedirs(prefix, exist_ok=True)
        logpath = os.path.join(prefix, "stderr.log")
        env = None
        if name == "weir":
            argv = [self.bins["weir"], "-b", "%s:%d" % (HOST, backend_port),
                    "-l", "%s:%d" % (HOST, port), "-w", str(workers), "--admin", "off"]
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "warn")   # no per-request logging, like the peers
        elif name == WEIR_CONFIG:
            conf = self.weir_config(os.path.join(prefix, "weir.toml"), backend_port)
            argv = [self.bins[WEIR_CONFIG], "--config", conf,
                    "-l", "%s:%d" % (HOST, port), "-w", str(workers), "--admin", "off"]
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "warn")
        elif name == "nginx":
            conf = render("proxy-nginx.conf.in", os.path.join(prefix, "nginx.conf"), dict(
                USER_LINE=self.user_line, WORKERS=workers, NOFILE=self.nofile,
                PREFIX=prefix, BACKEND_PORT=backend_port, LISTEN_PORT=port))
            argv = [self.bins["nginx-proxy"], "-e", "stderr", "-p", prefix + "/", "-c", conf]
        elif name == "hyper":
            if workers != 1:
                raise Fatal("hyper baseline is single-threaded")
            argv = [self.bins["hyper"], "%s:%d" % (HOST, port), "%s:%d" % (HOST, backend_port)]
        elif name == "haproxy":
            conf = render("haproxy.cfg.in", os.path.join(prefix, "haproxy.cfg"), dict(
                WORKERS=workers, BACKEND_PORT=backend_port, LISTEN_PORT=port))
            argv = [self.bins["haproxy"], "-db", "-f", conf]
        else:
            raise Fatal("unknown proxy %s" % name)
        with open(logpath, "a") as f:
            f.write("$ %s\n" % " ".join(shlex.quote(x) for x in argv))
        proc = self.procs.spawn(argv, logpath, env=env, cwd=prefix)
        t = Target(name, port, proc, logpath)
        why = wait_ready(proc, port, scen)
        if why:
            t.dead = why
            log("*** %s (%d workers) did not come up for %s: %s\n%s" % (
                name, workers, scen["key"], why, tail(logpath)))
        elif self.a.cpu_limit:
            try:
                t.limit = cpulimit.CpuLimit("weir-bench-%d-%s" % (os.getpid(), name),
                                            self.a.cpu_limit)
                t.limit.add(t.pids())
            except (OSError, ValueError) as e:
                self.procs.stop(proc)
                if t.limit:
                    t.limit.close()
                raise Fatal("cannot cap %s's CPU: %s" % (name, e))
        return t

    def weir_config(self, dest, backend_port):
        """--weir-config's file with its `# ORIGIN` line aimed at the origin (as
        bench/ab.sh does); the command line's -l, -w and --admin override the rest."""
        with open(self.a.weir_config) as f:
            lines = f.read().splitlines(True)
        origin = '"%s:%d"' % (HOST, backend_port)
        marked = [i for i, line in enumerate(lines) if "# ORIGIN" in line]
        if not marked:
            raise Fatal("--weir-config %s: no line marked `# ORIGIN` to aim at the origin"
                        % self.a.weir_config)
        for i in marked:
            lines[i] = re.sub(r'"[0-9.]*:[0-9]*"', origin, lines[i], count=1)
        with open(dest, "w") as f:
            f.write("".join(lines))
        return dest

    # ---- one measurement
    def run_wrk(self, t, scen, duration, record=True):
        port = t.port if t.name != DIRECT else self.backend_ports[scen["backend"]]
        script = os.path.join(WRK_DIR, scen.get("script", "report.lua"))
        argv = [self.bins["wrk"]] + scen["wrk"] + [
            "-d%ds" % duration, "--latency", "--timeout", "%ds" % self.a.wrk_timeout,
            "-s", script, "http://%s:%d/" % (HOST, port)]
        pids = t.pids()
        hwm_ok = reset_hwm(pids) if record else False
        sampler = RssSampler(pids)
        c0 = cpu_ticks(pids)
        m0 = machine_ticks()
        sampler.start()
        p = self.procs.spawn(argv, stdout=subprocess.PIPE)
        try:
            out, _ = p.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            out = b""
        finally:
            self.procs.stop(p)
        sampler.stop()
        c1 = cpu_ticks(pids)
        m1 = machine_ticks()
        hwm = status_kb(pids, "VmHWM") if hwm_ok else 0
        text = out.decode(errors="replace") if out else ""
        m = re.search(r"^WRK_RESULT (\{.*\})$", text, re.M)
        if not m:
            return dict(error="wrk failed (exit %s): %s" % (p.returncode, text.strip()[-300:]))
        w = json.loads(m.group(1))
        r = dict(
            requests=w["requests"],
            rps=w["requests"] / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0,
            p50_ms=w["lat_p50_us"] / 1000.0,
            p99_ms=w["lat_p99_us"] / 1000.0,
            non2xx=w["status"],
            sock_err=w["connect"] + w["read"] + w["write"] + w["timeout"],
            sock_err_detail=dict(connect=w["connect"], read=w["read"], write=w["write"],
                                 timeout=w["timeout"]),
            cpu_us_per_req=((c1 - c0) * 1e6 / CLK_TCK / w["requests"])
            if w["requests"] else None,
            cpu_s=(c1 - c0) / CLK_TCK,
            # A proxy that is not the bottleneck leaves its core partly idle; see
            # bench/sched.sh and RESULTS.md.
            idle_pct=100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
            peak_rss_mib=max(sampler.peak, hwm) / 1024.0,
        )
        # cross-check with wrk's human-readable summary
        m2 = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
        if m2:
            r["non2xx"] = max(r["non2xx"], int(m2.group(1)))
        return r

    def run_idle(self, t, scen):
        port = t.port if t.name != DIRECT else self.backend_ports[scen["backend"]]
        pids = t.pids()
        before = status_kb(pids, "VmRSS")
        hwm_ok = reset_hwm(pids)
        p = self.procs.spawn([sys.executable, os.path.join(BENCH, "idle_conns.py"),
                              "--port", str(port), "--count", str(self.a.idle_conns)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            line = p.stdout.readline()
            if not line:
                return dict(error="idle helper failed (exit %s)" % p.wait())
            opened = json.loads(line)
            time.sleep(self.a.idle_settle)
            samples = []
            for _ in range(5):
                samples.append(status_kb(pids, "VmRSS"))
                time.sleep(0.2)
            p.stdin.write(b"check\n")
            p.stdin.flush()
            still = json.loads(p.stdout.readline())["still_open"]
            hwm = status_kb(pids, "VmHWM") if hwm_ok else 0
            p.stdin.write(b"release\n")
            p.stdin.flush()
            p.wait(30)
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            return dict(error="idle helper: %s" % e)
        finally:
            self.procs.stop(p)
        held_kb = max(samples)
        return dict(
            held=opened["held"], still_open=still,
            failed=opened["failed"] + opened["non200"] + (opened["held"] - still),
            open_s=opened["open_s"],
            rss_before_mib=before / 1024.0,
            rss_held_mib=held_kb / 1024.0,
            kib_per_conn=(held_kb - before) / still if still else None,
            peak_rss_mib=max(held_kb, hwm) / 1024.0,
        )

    # ---- the whole thing
    def run(self):
        a = self.a
        self.start_backend()
        for workers in a.workers:
            self.results[workers] = {}
            for scen in a.scenarios:
                self.run_scenario(workers, scen)

    def run_scenario(self, workers, scen):
        a = self.a
        res = self.results[workers].setdefault(scen["key"], {})
        backend_port = self.backend_ports[scen["backend"]]
        log("\n== workers=%d  %s  (%s)" % (workers, scen["key"], scen["title"]))
        targets = [self.backend]
        try:
            for name in self.active_proxies():
                if name in EXTRAS and workers != 1:
                    continue                # the extras are single-threaded baselines
                targets.append(self.start_proxy(name, workers, backend_port, scen))
            for t in targets:
                res[t.name] = []
                if t.dead:
                    self.notes.append("workers=%d %s: %s %s" % (workers, scen["key"], t.name,
                                                                 t.dead))
            if not scen.get("idle") and a.warmup > 0:
                for t in targets:
                    if not t.dead:
                        self.run_wrk(t, scen, a.warmup, record=False)
            for rnd in range(1, a.rounds + 1):
                for t in targets:           # A B C A B C ...
                    if t.dead:
                        continue
                    r = self.run_idle(t, scen) if scen.get("idle") else \
                        self.run_wrk(t, scen, a.duration)
                    r["round"] = rnd
                    res[t.name].append(r)
                    log("  round %d/%d %-8s %s" % (rnd, a.rounds, t.name, fmt_round(r)))
                    if t.proc.poll() is not None:
                        t.dead = "exited with status %s during round %d" % (
                            t.proc.returncode, rnd)
                        log("*** %s %s\n%s" % (t.name, t.dead, tail(t.logpath)))
                        self.notes.append("workers=%d %s: %s %s" % (
                            workers, scen["key"], t.name, t.dead))
                        if t is self.backend:
                            raise Fatal("backend nginx died")
                    elif "error" in r:
                        self.notes.append("workers=%d %s: %s round %d: %s" % (
                            workers, scen["key"], t.name, rnd, r["error"]))
        finally:
            for t in targets[1:]:
                self.procs.stop(t.proc)
                if t.limit:
                    t.limit.close()


# --------------------------------------------------------------------- main
def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def build_weir(a):
    cargo = shutil.which("cargo")
    if not cargo:
        raise Fatal("cargo not found; install Rust, or pass --no-build with an existing "
                    "binary, or --proxies nginx,haproxy")
    log("$ cargo build --release   (in %s)" % ROOT)
    r = subprocess.run([cargo, "build", "--release"], cwd=ROOT, stdout=sys.stderr)
    if r.returncode != 0:
        raise Fatal("cargo build --release failed (exit %d); fix the build, or pass "
                    "--no-build to use an existing target/release/weir, or "
                    "--proxies nginx,haproxy to leave weir out" % r.returncode)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv):
    a = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    raise_nofile()
    own_tmp = a.tmpdir is None
    tmp = a.tmpdir or tempfile.mkdtemp(prefix="weir-bench.")
    procs = Procs(os.path.join(tmp, "pids"))
    bench = Bench(a, tmp, procs)
    try:
        if bench.nofile < a.idle_conns + 1000:
            log("warning: fd limit %d is low for %d idle connections" % (bench.nofile,
                                                                          a.idle_conns))
        if ("weir" in a.proxies or WEIR_CONFIG in a.proxies) and not a.no_build:
            build_weir(a)
        bench.find_tools()
        meta = collect_meta(bench)
        log("weir bench: workers=%s rounds=%d duration=%ds proxies=%s fd-limit=%d tmp=%s" % (
            a.workers, a.rounds, a.duration, ",".join(bench.active_proxies()) or "none",
            bench.nofile, tmp))
        bench.run()
        section = header(bench, meta) + "\n" + report(bench, meta)
        print(section)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(dict(meta=meta, skipped=bench.skipped, notes=bench.notes,
                               results=bench.results), f, indent=1)
        if not a.no_record:
            record(a.results, section)
            log("recorded in %s" % a.results)
        return 0
    except Fatal as e:
        log("compare: error: %s" % e)
        return 2
    finally:
        procs.stop_all()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
