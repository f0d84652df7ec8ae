"""Caps the CPU of a process tree with a cgroup, for `compare.sh --cpu-limit`.

On a 2-core machine wrk, the origin and the proxy share the cores, and a proxy that
needs less CPU per request than wrk and the origin together is not the bottleneck: its
core is partly idle and req/s is set by the other two (RESULTS.md, fourth session).
Giving every proxy the same CPU budget, below what it would use, makes the proxy the
bottleneck again, so req/s measures the proxy. Uses cgroup v1's `cpu` controller, or
v2's `cpu.max` where the v2 root delegates `cpu`.
"""

import os

# A short period keeps each throttled pause to a few ms; the kernel default (100 ms)
# would stall every connection for tens of ms at a time and make latency meaningless.
PERIOD_US = 10_000
# The kernel refuses a quota under 1 ms (EINVAL), so with this period the cap is >= 10%.
MIN_QUOTA_US = 1_000
V1_ROOT = "/sys/fs/cgroup/cpu"
V2_ROOT = "/sys/fs/cgroup"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def check(percent):
    """Raises ValueError saying why `percent` cannot be applied here; None if it can."""
    low = 100 * MIN_QUOTA_US // PERIOD_US
    high = 100 * (os.cpu_count() or 1)
    if not low <= percent <= high:
        raise ValueError("--cpu-limit must be between %d and %d (%% of one CPU), got %s" % (
            low, high, percent))
    v1 = os.path.exists(os.path.join(V1_ROOT, "cpu.cfs_quota_us"))
    v2 = "cpu" in _read(os.path.join(V2_ROOT, "cgroup.subtree_control")).split()
    root = V1_ROOT if v1 else V2_ROOT
    if not (v1 or v2) or not os.access(root, os.W_OK):
        raise ValueError("--cpu-limit needs root and a cgroup cpu controller (v1 `cpu`, or "
                         "a v2 root that delegates `cpu`)")


class CpuLimit:
    """A cgroup holding at most `percent` % of one CPU (100 = one whole core)."""

    def __init__(self, name, percent):
        check(percent)
        quota_us = int(PERIOD_US * percent / 100)
        try:
            self._create(name, quota_us)
        except OSError:
            self.close()
            raise

    def _create(self, name, quota_us):
        self.path, self.root = None, None
        if os.path.exists(os.path.join(V1_ROOT, "cpu.cfs_quota_us")):
            self.root, self.path = V1_ROOT, os.path.join(V1_ROOT, name)
            os.makedirs(self.path, exist_ok=True)
            _write(os.path.join(self.path, "cpu.cfs_period_us"), str(PERIOD_US))
            _write(os.path.join(self.path, "cpu.cfs_quota_us"), str(quota_us))
        else:
            self.root, self.path = V2_ROOT, os.path.join(V2_ROOT, name)
            os.makedirs(self.path, exist_ok=True)
            _write(os.path.join(self.path, "cpu.max"), "%d %d" % (quota_us, PERIOD_US))

    def add(self, pids):
        """Moves these processes (with all their threads) into the cgroup."""
        for pid in pids:
            try:
                _write(os.path.join(self.path, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                pass  # exited meanwhile

    def close(self):
        """Removes the cgroup; whatever is still in it goes back to the root first."""
        if not self.path:
            return
        try:
            for pid in _read(os.path.join(self.path, "cgroup.procs")).split():
                try:
                    _write(os.path.join(self.root, "cgroup.procs"), pid)
                except OSError:
                    pass
            os.rmdir(self.path)
        except OSError:
            pass


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
