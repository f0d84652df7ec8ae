"""Soak test for weir (issue #9): mixed traffic for a long time while the configuration
and the backends change under it, then checks that weir neither grew nor leaked.

    python3 bench/soak.py --weir target/release/weir [--duration 600] [--out DIR]

Traffic, all at once, from this one asyncio process:
  - keep-alive GETs on a round-robin pool and on a sticky-cookie pool;
  - POSTs with 1 KiB Content-Length bodies and 256 KiB chunked bodies;
  - 8 MiB downloads, and a slow client reading 1 MiB at 128 KB/s through a small
    receive buffer;
  - WebSocket sessions (handshake, 20 echoed frames, close).
Changes under it:
  - a config rewrite plus SIGHUP every 10 s (a sticky-pool backend's weight flips
    1 <-> 2; the file does not touch pool `web`, so the API's changes there persist
    through the state file, as the README's state-file rules say);
  - an admin API change every 15 s (a fourth backend added to `web`, then removed);
  - one backend SIGKILLed every 60 s and restarted 5 s later, in turn.
What it checks (exit 1 when one fails):
  - weir's RSS, averaged over the last minute, is within 5% of its average over the
    minute after warm-up (shorter windows for a short run: half of what follows warm-up);
  - weir's open fd count returns to its pre-traffic baseline once traffic stops and
    idle connections time out;
  - 0 errors other than the ones the script expects. Expected: an operation that was
    in flight on the killed backend at the instant of the kill (a POST answered 502, a
    body cut short, a WebSocket closed). Any error of an operation that did not
    overlap a kill, or of an idempotent request that never reached the killed backend,
    is unexpected, and so is any error at all caused by a reload or an API change.

Python 3 stdlib only. Binds only 127.0.0.1.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak_traffic as traffic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# Bounds of the schedule: the cadence.
RELOAD_EVERY_S = 10
API_EVERY_S = 15
KILL_EVERY_S = 60
DOWN_FOR_S = 5
# RSS sampling period; a minute holds 12 samples.
SAMPLE_EVERY_S = 5
# Allowed RSS drift and how long the fd count may take to return (upstream idle timeout
# 5 s and client keep-alive 5 s in the soak config, plus margin for a busy machine).
MAX_DRIFT = 0.05
FD_SETTLE_S = 60
TOKEN = "soak-token"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(ports, weight):
    b = ports["backends"]
    return f"""# written by bench/soak.py
[server]
listen = ["127.0.0.1:{ports['weir']}"]
workers = 2
keepalive_timeout = "5s"

[admin]
listen = "127.0.0.1:{ports['admin']}"
token = "{TOKEN}"

[[pool]]
name = "web"
idle_timeout = "5s"
backends = ["127.0.0.1:{b[0]}", "127.0.0.1:{b[1]}", "127.0.0.1:{b[2]}"]

[[pool]]
name = "sticky"
strategy = "sticky"
idle_timeout = "5s"
backends = ["127.0.0.1:{b[0]}", "127.0.0.1:{b[1]}", {{ address = "127.0.0.1:{b[2]}", weight = {weight} }}]

[[route]]
path_prefix = "/s/"
pool = "sticky"
"""


class Fleet:
    """The backend processes, by index; index 3 is the spare the API adds."""

    def __init__(self, ports, logdir):
        self.ports, self.logdir, self.procs = ports, logdir, {}

    async def start(self, i):
        log = open(os.path.join(self.logdir, f"backend{i}.log"), "ab")
        self.procs[i] = await asyncio.create_subprocess_exec(
            sys.executable, os.path.join(HERE, "soak_backend.py"),
            str(self.ports["backends"][i]), f"b{i}", stdout=log, stderr=log)
        await traffic.wait_port(self.ports["backends"][i])

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)

    async def stop_all(self):
        for p in self.procs.values():
            if p.returncode is None:
                p.send_signal(signal.SIGKILL)
                await p.wait()


def weir_pid(cfg_path):
    """The pid of the weir process started with `cfg_path`, or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == "weir" and cfg_path.encode() in argv:
            return int(entry)
    return None


def proc_reading(pid):
    """(VmRSS, open fds, RssAnon, RssFile) in KiB and count. RSS is split because file
    pages (the binary's code, faulted in the first time a rare path runs) are clean and
    reclaimable; anonymous pages are the heap and stacks."""
    kib = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                kib[key] = int(line.split()[1])
    return (kib["VmRSS"], len(os.listdir(f"/proc/{pid}/fd")),
            kib.get("RssAnon", 0), kib.get("RssFile", 0))


async def schedule(ctx, weir, fleet, cfg_path, ports, end):
    """Reloads, API changes and kills until `end`; every event is recorded."""
    start = time.monotonic()
    next_reload, next_api, next_kill = RELOAD_EVERY_S, API_EVERY_S, KILL_EVERY_S
    weight, spare_in, victim = 1, False, 0
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
        t = time.monotonic() - start
        if t >= next_reload:
            next_reload += RELOAD_EVERY_S
            weight = 3 - weight
            tmp = cfg_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(config_text(ports, weight))
            os.replace(tmp, cfg_path)
            os.kill(ctx.weir_pid, signal.SIGHUP)
            ctx.event("reload")
        if t >= next_api:
            next_api += API_EVERY_S
            addr = f"127.0.0.1:{ports['backends'][3]}"
            if spare_in:
                path, body, method = f"/api/v1/pools/web/backends/{addr}", None, "DELETE"
            else:
                path, body, method = "/api/v1/pools/web/backends", json.dumps({"address": addr}), "POST"
            status = await traffic.admin_call(ports["admin"], method, path, body, TOKEN)
            ctx.event(f"api {method} {status}")
            if status not in (200, 201):
                ctx.unexpected("api", f"{method} {path} answered {status}")
            spare_in = not spare_in
        if t >= next_kill:
            next_kill += KILL_EVERY_S
            ctx.kill(f"b{victim}")
            fleet.kill(victim)
            await asyncio.sleep(DOWN_FOR_S)
            await fleet.procs[victim].wait()
            await fleet.start(victim)
            ctx.event(f"restart b{victim}")
            victim = (victim + 1) % 3


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


async def checkpoint(pid, admin_port):
    """What weir holds besides memory: its threads and its metric series (sample lines of
    /metrics). Taken after warm-up and at the end, so a series kept for every backend the
    API removed, or a thread per reload, shows as growth."""
    text = await traffic.admin_get(admin_port, "/metrics")
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"threads": threads(pid), "metric_series": series}


async def checkpoint_at(pid, admin_port, at, into):
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    into.append(await checkpoint(pid, admin_port))


async def sample(pid, samples, end):
    while time.monotonic() < end:
        samples.append((time.monotonic(), *proc_reading(pid)))
        await asyncio.sleep(SAMPLE_EVERY_S)


async def settle_fds(pid, baseline):
    """Waits for weir's fd count to come back to `baseline`; returns the last count."""
    deadline = time.monotonic() + FD_SETTLE_S
    fds = proc_reading(pid)[1]
    while fds > baseline and time.monotonic() < deadline:
        await asyncio.sleep(1)
        fds = proc_reading(pid)[1]
    return fds


def rss_drift(samples, t0, warmup, window, column=1):
    """RSS (sample `column`: 1 VmRSS, 3 RssAnon, 4 RssFile) averaged over `window` seconds
    after warm-up, over the last `window` seconds, and the relative drift between them."""
    after = [s[column] for s in samples if warmup <= s[0] - t0 < warmup + window]
    last_t = samples[-1][0]
    last = [s[column] for s in samples if last_t - s[0] < window]
    first = sum(after) / len(after)
    return first, sum(last) / len(last), (sum(last) / len(last) - first) / first


async def main(args):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ports = {"weir": free_port(), "admin": free_port(),
             "backends": [free_port() for _ in range(4)]}
    fleet = Fleet(ports, out)
    for i in range(4):
        await fleet.start(i)
    cfg_path = os.path.join(out, "weir.toml")
    for stale in ("weir.state.json", "weir.log"):
        if os.path.exists(os.path.join(out, stale)):
            os.remove(os.path.join(out, stale))
    with open(cfg_path, "w") as f:
        f.write(config_text(ports, 1))
    weir = await asyncio.create_subprocess_exec(
        args.weir, "--config", cfg_path, "--log-level", "warn",
        stdout=open(os.path.join(out, "weir.log"), "ab"), stderr=asyncio.subprocess.STDOUT)
    try:
        await traffic.wait_port(ports["weir"])
        await asyncio.sleep(1)
        # Under a wrapper (`--weir` a script running heaptrack or valgrind), the process to
        # signal and measure is weir itself, found by its config path.
        pid = weir_pid(cfg_path) or weir.pid
        baseline_fds = proc_reading(pid)[1]
        ctx = traffic.Context()
        ctx.weir_pid = pid
        t0 = time.monotonic()
        end = t0 + args.duration
        samples = []
        loops = traffic.all_loops(ctx, ports["weir"], end)
        marks = []
        await asyncio.gather(schedule(ctx, weir, fleet, cfg_path, ports, end),
                             sample(pid, samples, end),
                             checkpoint_at(pid, ports["admin"], t0 + args.warmup, marks), *loops)
        fds = await settle_fds(pid, baseline_fds)
        marks.append(await checkpoint(pid, ports["admin"]))
        window = min(60, (args.duration - args.warmup) / 2)
        first, last, drift = rss_drift(samples, t0, args.warmup, window)
        anon = rss_drift(samples, t0, args.warmup, window, column=3)
        file_ = rss_drift(samples, t0, args.warmup, window, column=4)
        report = ctx.report()
        report.update(duration_s=args.duration, warmup_s=args.warmup,
                      rss_kib_after_warmup=round(first), rss_kib_last_minute=round(last),
                      rss_drift=round(drift, 4), fds_baseline=baseline_fds, fds_after=fds,
                      anon_kib=[round(anon[0]), round(anon[1])], anon_drift=round(anon[2], 4),
                      file_kib=[round(file_[0]), round(file_[1])],
                      file_drift=round(file_[2], 4),
                      weir_exit=weir.returncode,
                      threads=[m["threads"] for m in marks],
                      metric_series=[m["metric_series"] for m in marks],
                      samples=[(round(t - t0, 1), r, f, a, fl) for t, r, f, a, fl in samples])
        ok = (abs(drift) < MAX_DRIFT and fds <= baseline_fds and report["unexpected"] == 0
              and weir.returncode is None)
        report["pass"] = ok
        with open(os.path.join(out, "soak.json"), "w") as f:
            json.dump(report, f, indent=1)
        print(traffic.summary(report))
        return 0 if ok else 1
    finally:
        if weir.returncode is None:
            # weir itself first, so that a wrapper (heaptrack) sees it exit normally.
            real = weir_pid(cfg_path)
            if real is not None and real != weir.pid:
                os.kill(real, signal.SIGTERM)
            weir.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(weir.wait(), 35)
            except asyncio.TimeoutError:
                weir.kill()
        await fleet.stop_all()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weir", default=os.path.join(HERE, "..", "target", "release", "weir"))
    p.add_argument("--duration", type=int, default=600, help="seconds of traffic")
    p.add_argument("--warmup", type=int, default=60, help="seconds before RSS counts")
    p.add_argument("--out", default="/tmp/weir-soak")
    a = p.parse_args()
    if a.duration < a.warmup + 2 * SAMPLE_EVERY_S * 2:
        p.error("--duration must leave room for two RSS windows after --warmup")
    sys.exit(asyncio.run(main(a)))
