#!/usr/bin/env python3
"""The daemon beside the floor: CPU time ratio at 10 ms, 100 ms and 1 s.

The floor (bench/floor/floor.cc) is one pinned thread per online CPU that
wakes on an absolute schedule and read()s a perf group of cpu-clock and
context-switches, nothing else. For each interval this runs the floor and the
daemon (the default configuration — kernel statistics and built-in derived
metrics on — counting the same two events at the same interval) in one run,
taking turns: ROUNDS windows of the floor alone (the daemon stopped with
SIGSTOP) alternating with windows of the daemon alone, and compares the run
time of all their threads
(/proc/<pid>/task/*/schedstat, first field: nanoseconds on a CPU, charged at
every context switch, unlike utime+stime which are charged by tick and miss
short wake-ups). The daemon is scraped every 15 s (Prometheus' default) as
Prometheus scrapes (one kept-alive connection, gzip accepted) so that the
figure includes what serving costs.

A second floor, the same program that also preads /proc/stat on the lowest
CPU once a second, takes its own turns: the least the default
configuration's cpu_busy_ratio (1 s /proc/stat windows) adds. The goal is on
the first ratio; the second says how much of the rest that one consumer is.

  run_floor.py [--build build] [--window S] [--json out.json]

`make bench` runs it through bench/run_bench.py. Standard library only.
"""

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_bench  # noqa: E402  (the shared process helpers)

FLOOR_EVENTS = ["cpu-clock", "context-switches"]
# (label, the daemon's interval, nanoseconds)
INTERVALS = [("10ms", "10ms", 10_000_000), ("100ms", "100ms", 100_000_000),
             ("1s", "1s", 1_000_000_000)]
GOAL_RATIO = 1.5
# The default /proc/stat window of cpu_busy_ratio (config kDefaultStatWindow).
STAT_PERIOD_NS = 1_000_000_000
# (name, extra floor arguments)
FLOORS = [("floor", []), ("floor_stat", [str(STAT_PERIOD_NS)])]
SCRAPE_PERIOD_S = 15.0
ROUNDS = 4      # windows of each floor and of the daemon, taking turns
SETTLE_S = 0.5  # after a start or SIGCONT, before a window
SCRAPE_HEADERS = {"Accept-Encoding": "gzip",
                  "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}
WARMUP_S = 3.0


def daemon_config(tmp, name, interval, port_file):
    """The default configuration, counting the floor's events in the floor's group."""
    lines = ["[exporter]", 'listen = "127.0.0.1:0"', f'port_file = "{port_file}"', "",
             "[sampling]", f'interval = "{interval}"', "",
             "[log]", 'level = "warn"', 'target = "stderr"', ""]
    # One perf group, as the floor reads (without `group` each event is its own).
    for ev in FLOOR_EVENTS:
        lines += ["[[events]]", f'name = "{ev}"', f'event = "{ev}"', 'group = "floor"', ""]
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def start_floor(build, tmp, label, interval_ns, k, name="floor", extra=()):
    return run_bench.Process(f"{name}_{label}_{k}",
                             [os.path.join(build, "bench", "floor", "floor"), str(interval_ns),
                              *extra],
                             os.path.join(tmp, f"{name}_{label}_{k}.log"))


def start_daemon(build, tmp, label, interval, daemon_path=None):
    name = f"daemon_{label}"
    port_file = os.path.join(tmp, f"{name}.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    cfg = daemon_config(tmp, name, interval, port_file)
    daemon_path = daemon_path or os.path.join(build, "daemon", "pmu-exporter")
    daemon = run_bench.Process(name, [daemon_path, "--config", cfg],
                               os.path.join(tmp, f"{name}.log"))
    run_bench.wait_ready(daemon, port_file)
    return daemon


class Scraper:
    """Scrapes as Prometheus does: one kept-alive connection, gzip accepted."""

    def __init__(self, port):
        self.port, self.conn, self.ok, self.failed = port, None, 0, 0

    def scrape(self):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
            response = self.conn.getresponse()
            response.read()
            good = response.status == 200
        except (OSError, http.client.HTTPException):
            good = False
            self.close()
        if good:
            self.ok += 1
        else:
            self.failed += 1

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def online_count():
    """CPUs in /sys/devices/system/cpu/online ("0-3,5" -> 5): the floor's threads."""
    count = 0
    for part in run_bench.read_file("/sys/devices/system/cpu/online", "0").strip().split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def require_schedstat(*readings):
    if None in readings:
        raise RuntimeError("schedstat is not available (kernel without CONFIG_SCHEDSTATS)")


def window_for(interval_ns, window):
    # At least 30 intervals, so that a coarse aggregation period is inside.
    return max(window, 30 * interval_ns / 1e9)


def measure_one(build, tmp, label, interval, interval_ns, window, daemon_path=None):
    """Alternating windows: the floor alone (the daemon stopped), then the
    daemon alone, ROUNDS times. Run at once, each took turns waking a CPU the
    other had just woken (one paid the wake-up from idle, the other ran warm,
    which one depending on the two schedules' phases), and the ratio of one
    run ranged from 0.86 to 1.78 on a quiet machine."""
    daemon = start_daemon(build, tmp, label, interval, daemon_path)
    scraper = Scraper(daemon.port)
    try:
        time.sleep(WARMUP_S)  # start-up (plan, first reading) is not the steady state
        seconds = window_for(interval_ns, window)
        turn = seconds / ROUNDS
        load = run_bench.MachineLoad()
        floor_cpu = {name: 0.0 for name, _ in FLOORS}
        floor_s = {name: 0.0 for name, _ in FLOORS}
        daemon_s = daemon_cpu = 0.0
        daemon_time = 0.0  # daemon-window seconds, for the 15 s scrape period
        next_scrape = SCRAPE_PERIOD_S
        for k in range(ROUNDS):
            for name, extra in FLOORS:
                os.kill(daemon.pid, signal.SIGSTOP)
                floor = start_floor(build, tmp, label, interval_ns, k, name, extra)
                try:
                    time.sleep(SETTLE_S)
                    if not floor.alive():
                        raise RuntimeError(
                            f"floor exited early: {run_bench.read_file(floor.log.name)}")
                    f0, t0 = floor.cpu_seconds_schedstat(), time.monotonic()
                    time.sleep(turn)
                    f1, t1 = floor.cpu_seconds_schedstat(), time.monotonic()
                finally:
                    floor.stop()
                    os.kill(daemon.pid, signal.SIGCONT)
                require_schedstat(f0, f1)
                floor_cpu[name] += f1 - f0
                floor_s[name] += t1 - t0
            time.sleep(SETTLE_S)  # the samplers' catch-up after SIGCONT is not measured
            d0, t0d = daemon.cpu_seconds_schedstat(), time.monotonic()
            end = t0d + turn
            while True:
                now = time.monotonic()
                due = t0d + (next_scrape - daemon_time)
                if due >= end:
                    time.sleep(max(0.0, end - now))
                    break
                time.sleep(max(0.0, due - now))
                scraper.scrape()
                next_scrape += SCRAPE_PERIOD_S
            d1, t1d = daemon.cpu_seconds_schedstat(), time.monotonic()
            daemon_time += t1d - t0d
            require_schedstat(d0, d1)
            daemon_cpu += d1 - d0
            daemon_s += t1d - t0d
        daemon_pct = 100.0 * daemon_cpu / daemon_s
        row = {"interval": label, "window_s": round(sum(floor_s.values()) + daemon_s, 2),
               "rounds": ROUNDS, "cpus": online_count(),
               "daemon_pct_of_one_core": round(daemon_pct, 4)}
        for name, _ in FLOORS:
            pct = 100.0 * floor_cpu[name] / floor_s[name]
            row[f"{name}_pct_of_one_core"] = round(pct, 4)
            # "ratio" against the plain floor (the goal), "ratio_floor_stat" against the other
            row["ratio" if name == "floor" else f"ratio_{name}"] = (
                round(daemon_pct / pct, 3) if pct > 0 else None)
        return {
            **row,
            "goal": GOAL_RATIO, "scrapes": {"ok": scraper.ok, "failed": scraper.failed},
            **load.stop(),
        }
    finally:
        scraper.close()
        try:
            os.kill(daemon.pid, signal.SIGCONT)
        except OSError:
            pass
        daemon.stop()


def measure_floor(build, tmp, window=20.0, daemon_path=None, only=None):
    """One row per interval; every row from one side-by-side window."""
    rows = []
    for label, interval, interval_ns in INTERVALS:
        if only and label not in only:
            continue
        run_bench.log(f"the floor and the daemon taking turns at {label} "
                      f"({window_for(interval_ns, window):.0f} s window)")
        rows.append(measure_one(build, tmp, label, interval, interval_ns, window, daemon_path))
    return rows


def markdown(rows):
    out = ["| sampling | floor (% of one core) | daemon (% of one core) | daemon / floor | goal "
           "| floor + 1 s /proc/stat read (% of one core) | daemon / that |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        met = r["ratio"] is not None and r["ratio"] <= r["goal"]
        out.append(f"| {r['interval']} | {r['floor_pct_of_one_core']:.3f} | "
                   f"{r['daemon_pct_of_one_core']:.3f} | {run_bench.fmt(r['ratio'])} x | "
                   f"<= {r['goal']} x {'met' if met else '**missed**'} | "
                   f"{r['floor_stat_pct_of_one_core']:.3f} | "
                   f"{run_bench.fmt(r['ratio_floor_stat'])} x |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per interval (min)")
    ap.add_argument("--json", help="write the rows here too")
    ap.add_argument("--daemon", help="another pmu-exporter binary (default: the build's)")
    ap.add_argument("--only", action="append", help="interval label (10ms, 100ms, 1s); repeatable")
    args = ap.parse_args()
    build = os.path.abspath(os.path.join(run_bench.ROOT, args.build))
    with tempfile.TemporaryDirectory(prefix="pmu-floor-") as tmp:
        try:
            rows = measure_floor(build, tmp, args.window, args.daemon, args.only)
        finally:
            run_bench.Process.stop_all()
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
