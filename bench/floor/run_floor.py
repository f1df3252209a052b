#!/usr/bin/env python3
"""The daemon beside the floor: CPU time ratio at 10 ms, 100 ms and 1 s.

The floor (bench/floor/floor.cc) is one pinned thread per online CPU that
wakes on an absolute schedule and read()s a perf group of cpu-clock and
context-switches, nothing else. For each interval this runs the floor and the
daemon (the default configuration — kernel statistics and built-in derived
metrics on — counting the same two events at the same interval) side by
side in one window, and compares the run time of all their threads
(/proc/<pid>/task/*/schedstat, first field: nanoseconds on a CPU, charged at
every context switch, unlike utime+stime which are charged by tick and miss
short wake-ups). The daemon is scraped every 15 s (Prometheus' default) so
that the figure includes what serving costs.

  run_floor.py [--build build] [--window S] [--json out.json]

`make bench` runs it through bench/run_bench.py. Standard library only.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_bench  # noqa: E402  (the shared process helpers)

FLOOR_EVENTS = ["cpu-clock", "context-switches"]
# (label, the daemon's interval, nanoseconds)
INTERVALS = [("10ms", "10ms", 10_000_000), ("100ms", "100ms", 100_000_000),
             ("1s", "1s", 1_000_000_000)]
GOAL_RATIO = 1.5
SCRAPE_PERIOD_S = 15.0
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


def start_pair(build, tmp, label, interval, interval_ns, daemon_path=None):
    floor = run_bench.Process(f"floor_{label}",
                              [os.path.join(build, "bench", "floor", "floor"), str(interval_ns)],
                              os.path.join(tmp, f"floor_{label}.log"))
    name = f"daemon_{label}"
    port_file = os.path.join(tmp, f"{name}.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    cfg = daemon_config(tmp, name, interval, port_file)
    daemon_path = daemon_path or os.path.join(build, "daemon", "pmu-exporter")
    daemon = run_bench.Process(name, [daemon_path, "--config", cfg],
                               os.path.join(tmp, f"{name}.log"))
    run_bench.wait_ready(daemon, port_file)
    return floor, daemon


def online_count():
    """CPUs in /sys/devices/system/cpu/online ("0-3,5" -> 5): the floor's threads."""
    count = 0
    for part in run_bench.read_file("/sys/devices/system/cpu/online", "0").strip().split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def window_for(interval_ns, window):
    # At least 30 intervals, so that a coarse aggregation period is inside.
    return max(window, 30 * interval_ns / 1e9)


def measure_one(build, tmp, label, interval, interval_ns, window, daemon_path=None):
    floor, daemon = start_pair(build, tmp, label, interval, interval_ns, daemon_path)
    try:
        time.sleep(WARMUP_S)  # start-up (plan, first reading) is not the steady state
        if not floor.alive():
            raise RuntimeError(f"floor exited early: {run_bench.read_file(floor.log.name)}")
        stop = threading.Event()
        scrapes = {"ok": 0, "failed": 0}

        def scrape():
            while not stop.wait(SCRAPE_PERIOD_S):
                try:
                    good = run_bench.http_get(daemon.port)[0] == 200
                except OSError:
                    good = False
                scrapes["ok" if good else "failed"] += 1

        scraper = threading.Thread(target=scrape, daemon=True)
        seconds = window_for(interval_ns, window)
        load = run_bench.MachineLoad()
        t0 = time.monotonic()
        f0, d0 = floor.cpu_seconds_schedstat(), daemon.cpu_seconds_schedstat()
        scraper.start()
        time.sleep(seconds)
        f1, d1 = floor.cpu_seconds_schedstat(), daemon.cpu_seconds_schedstat()
        t1 = time.monotonic()
        stop.set()
        scraper.join()
        if None in (f0, d0, f1, d1):
            raise RuntimeError("schedstat is not available (kernel without CONFIG_SCHEDSTATS)")
        elapsed = t1 - t0
        floor_pct = 100.0 * (f1 - f0) / elapsed
        daemon_pct = 100.0 * (d1 - d0) / elapsed
        return {
            "interval": label, "window_s": round(elapsed, 2), "cpus": online_count(),
            "floor_pct_of_one_core": round(floor_pct, 4),
            "daemon_pct_of_one_core": round(daemon_pct, 4),
            "ratio": round(daemon_pct / floor_pct, 3) if floor_pct > 0 else None,
            "goal": GOAL_RATIO, "scrapes": scrapes, **load.stop(),
        }
    finally:
        daemon.stop()
        floor.stop()


def measure_floor(build, tmp, window=20.0, daemon_path=None, only=None):
    """One row per interval; every row from one side-by-side window."""
    rows = []
    for label, interval, interval_ns in INTERVALS:
        if only and label not in only:
            continue
        run_bench.log(f"floor beside the daemon at {label} "
                      f"({window_for(interval_ns, window):.0f} s window)")
        rows.append(measure_one(build, tmp, label, interval, interval_ns, window, daemon_path))
    return rows


def markdown(rows):
    out = ["| sampling | floor (% of one core) | daemon (% of one core) | daemon / floor | goal |",
           "|---|---|---|---|---|"]
    for r in rows:
        met = r["ratio"] is not None and r["ratio"] <= r["goal"]
        out.append(f"| {r['interval']} | {r['floor_pct_of_one_core']:.3f} | "
                   f"{r['daemon_pct_of_one_core']:.3f} | {r['ratio']:.2f} x | "
                   f"<= {r['goal']} x {'met' if met else '**missed**'} |")
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
