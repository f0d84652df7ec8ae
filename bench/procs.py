"""Process handling and /proc readings for the weir benchmark driver (bench/compare.py):
the Procs registry of child process groups, per-tree CPU ticks, machine idle time,
RSS / VmHWM readings and a background RSS sampler.

Python 3 stdlib only, Linux only (/proc).
"""
import os
import signal
import subprocess
import threading


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
