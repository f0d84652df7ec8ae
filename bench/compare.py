#!/usr/bin/env python3
"""weir benchmark driver: weir vs nginx vs HAProxy in front of one nginx origin.

Normally started by bench/compare.sh (which installs the tools, raises the fd limit,
creates the temp dir and cleans up). See bench/README.md. Python 3 stdlib only.
Everything listens on and talks to 127.0.0.1 only.
"""
import argparse
import datetime
import http.client
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import cpulimit

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CONF = os.path.join(BENCH, "conf")
WRK_DIR = os.path.join(BENCH, "wrk")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
LARGE_SIZE = 1 << 20
POST_SIZE = 1024

PEERS = ("nginx", "haproxy")
# "hyper" is opt-in: a minimal reverse proxy on hyper 1.x (bench/hyper-baseline), run only
# to measure what weir's own HTTP/1 codec buys. It is single-threaded: 1-worker runs only.
EXTRAS = ("hyper",)
ALL_PROXIES = ("weir",) + PEERS + EXTRAS
DEFAULT_PROXIES = ("weir",) + PEERS
DIRECT = "direct"

# backend: which origin port the scenario uses ("small" / "large" / "post")
SCENARIOS = [
    dict(key="get-ka", title="small GET, keep-alive (-t1 -c64)", backend="small",
         wrk=["-t1", "-c64"]),
    dict(key="get-close", title="small GET, Connection: close (-t1 -c64)", backend="small",
         wrk=["-t1", "-c64", "-H", "Connection: close"]),
    dict(key="post-1k", title="1 KiB POST, keep-alive (-t1 -c64)", backend="post",
         wrk=["-t1", "-c64"], script="post.lua"),
    dict(key="get-1m", title="1 MiB response, keep-alive (-t1 -c8)", backend="large",
         wrk=["-t1", "-c8"]),
    dict(key="get-c1000", title="small GET, 1,000 keep-alive conns (-t2 -c1000)",
         backend="small", wrk=["-t2", "-c1000"]),
    dict(key="idle-10k", title="idle keep-alive conns held open (RSS only)", backend="small",
         idle=True),
]
SCEN_BY_KEY = {s["key"]: s for s in SCENARIOS}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Fatal(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """Every child runs in its own session/process group; the live group ids are
    mirrored into TMP/pids so that compare.sh's trap can kill leftovers."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.live = []

    def _sync(self):
        with open(self.pidfile, "w") as f:
            for p in self.live:
                f.write("%d\n" % p.pid)

    def spawn(self, argv, logpath=None, env=None, stdin=subprocess.DEVNULL,
              stdout=None, cwd=None):
        out = stdout
        logf = None
        if out is None:
            logf = open(logpath or os.devnull, "ab")
            out = logf
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=out,
                                 stderr=subprocess.STDOUT if logf else None,
                                 env=env, cwd=cwd, start_new_session=True)
        finally:
            if logf:
                logf.close()
        self.live.append(p)
        self._sync()
        return p

    def stop(self, p, timeout=5.0):
        if p not in self.live:
            return
        try:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # group members left behind (e.g. nginx workers) or a stuck leader
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self.live.remove(p)
            self._sync()

    def stop_all(self):
        for p in list(self.live):
            self.stop(p, timeout=3.0)


# ------------------------------------------------------------- /proc probes

def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()   # fields from #3 (state) on


def proc_tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(d))[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, ()))
    return out


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])   # utime, stime (all threads)
        except (OSError, ValueError, IndexError):
            pass
    return total


def machine_ticks():
    """(idle, total) clock ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        cols = [int(x) for x in f.readline().split()[1:9]]
    return cols[3] + cols[4], sum(cols)   # idle + iowait; user..steal


def status_kb(pids, field):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return total


def reset_hwm(pids):
    """Reset VmHWM to the current RSS (Linux >= 4.0). Returns True if it worked."""
    ok = True
    for pid in pids:
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class RssSampler(threading.Thread):
    def __init__(self, pids, interval=0.1):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak = 0
        self._stop_ev = threading.Event()

    def run(self):
        while True:
            self.peak = max(self.peak, status_kb(self.pids, "VmRSS"))
            if self._stop_ev.wait(self.interval):
                break

    def stop(self):
        self._stop_ev.set()
        self.join()
        self.peak = max(self.peak, status_kb(self.pids, "VmRSS"))


# ----------------------------------------------------------------- helpers

def free_port(used):
    """A free loopback port below the ephemeral range (so it never collides with
    the client side of the benchmark's own connections)."""
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError):
        eph_lo = 32768
    hi = eph_lo - 1 if eph_lo - 1 > lo + 1000 else 65000
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in used:
            continue
        s = socket.socket()
        try:
            s.bind((HOST, port))
        except OSError:
            continue
        finally:
            s.close()
        used.add(port)
        return port
    raise Fatal("could not find a free port on 127.0.0.1")


def render(template, dest, values):
    with open(os.path.join(CONF, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise Fatal("%s: unfilled placeholders %s" % (template, sorted(set(left))))
    with open(dest, "w") as f:
        f.write(text)
    return dest


def which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def run_out(argv, **kw):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "unavailable (%s)" % e


def probe(port, scen, timeout=2.0):
    """One request of the scenario's kind; returns None if OK, else a reason."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        if scen["backend"] == "post":
            c.request("POST", "/", body=b"x" * POST_SIZE,
                      headers={"Content-Type": "application/octet-stream"})
        else:
            c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return "%s: %s" % (type(e).__name__, e)
    if r.status != 200:
        return "status %d" % r.status
    want = LARGE_SIZE if scen["backend"] == "large" else len(b"ok\n")
    if len(body) != want:
        return "body %d bytes, expected %d" % (len(body), want)
    return None


def wait_ready(proc, port, scen, timeout=15.0):
    deadline = time.monotonic() + timeout
    why = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %s" % proc.returncode
        why = probe(port, scen, timeout=1.0)
        if why is None:
            return None
        time.sleep(0.1)
    return "not ready after %.0fs (%s)" % (timeout, why)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


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
            if name == "weir":
                path = self.a.weir_bin
                if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                    self.skip(name, "binary %s not found (build it with cargo build --release)"
                              % path)
                else:
                    self.bins["weir"] = path
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
    if bench.notes:
        out.append("Problems during the run:")
        out.append("")
        out.extend("- " + n for n in bench.notes)
        out.append("")
    return "\n".join(out)


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


# --------------------------------------------------------------------- main

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
        if "weir" in a.proxies and not a.no_build:
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
