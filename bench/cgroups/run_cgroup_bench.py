#!/usr/bin/env python3
"""Per-cgroup attribution at scale (`make bench-cgroups`).

For each mode ([cgroups] mode = "perf" and "bpf") and 10, 100 and 1000
cgroups created under the cgroup v2 root (pmu-bench-<pid>/cgN), runs the real
pmu-exporter with four software events attributed to every cgroup and
measures, after a warm-up:
  * fds:       entries in /proc/<pid>/fd,
  * CPU:       the daemon's utime+stime over a 10 s window, in % of one CPU,
  * scrape:    median and max of 20 sequential GET /metrics, and the size,
  * series:    pmu_cgroup_events_total lines.
A small sleeper in cg0 keeps cgroup switches going (about 1000/s). Writes
bench/results/cgroups.{md,json}. Needs root and cgroup v2 (else exit 77).
Standard library only. Hold the machine lock while it runs
(flock /tmp/pmu-machine.lock make bench-cgroups) on shared machines.
"""

import argparse
import datetime
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENTS = ["cpu-clock", "task-clock", "context-switches", "page-faults"]
COUNTS = [10, 100, 1000]
MODES = ["perf", "bpf"]


def cgroup2_root():
    best = ""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "cgroup2":
                if not best or len(fields[1]) < len(best):
                    best = fields[1]
    return best


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, body


def write_config(path, root, top, mode, port_file):
    lines = ["[exporter]", 'listen = "127.0.0.1:0"', f'port_file = "{port_file}"',
             "max_series = 100000", "[sampling]", 'interval = "100ms"', "[log]",
             'target = "stderr"']
    for e in EVENTS:
        lines += ["[[events]]", f'name = "{e}"', f'event = "{e}"']
    lines += ["[cgroups]", "enabled = true", f'mode = "{mode}"', f'root = "{root}"',
              f'include = ["/{top}/**"]', "max = 2000", 'rescan = "10s"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_one(daemon, root, mode, count, window, tmp):
    top = f"pmu-bench-{os.getpid()}"
    base = os.path.join(root, top)
    os.mkdir(base)
    dirs = []
    sleeper = None
    proc = None
    try:
        for i in range(count):
            d = os.path.join(base, f"cg{i}")
            os.mkdir(d)
            dirs.append(d)
        # A task switching in and out of cg0 about 1000 times a second.
        sleeper = subprocess.Popen(
            [sys.executable, "-c",
             "import os,sys,time\nopen(sys.argv[1]+'/cgroup.procs','w').write('0')\n"
             "while True: time.sleep(0.001)\n", dirs[0]])
        port_file = os.path.join(tmp, f"{mode}-{count}.port")
        cfg = os.path.join(tmp, f"{mode}-{count}.toml")
        write_config(cfg, root, top, mode, port_file)
        log_path = os.path.join(tmp, f"{mode}-{count}.log")
        started = time.perf_counter()
        proc = subprocess.Popen([daemon, "--config", cfg], stdout=subprocess.DEVNULL,
                                stderr=open(log_path, "w"))
        port = None
        while time.perf_counter() - started < 120 and proc.poll() is None:
            if os.path.exists(port_file):
                text = open(port_file).read().strip()
                if text:
                    port = int(text)
                    break
            time.sleep(0.05)
        if port is None:
            raise RuntimeError(f"daemon did not start ({mode}, {count}): "
                               + open(log_path).read()[-2000:])
        start_s = time.perf_counter() - started
        time.sleep(2)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        times, size, series = [], 0, 0
        for _ in range(20):
            elapsed, body = scrape(port)
            times.append(elapsed * 1000)
            size = len(body)
        series = sum(1 for line in body.decode().splitlines()
                     if line.startswith("pmu_cgroup_events_total{"))
        return {"mode": mode, "cgroups": count, "fds": fds,
                "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
                "scrape_ms_median": statistics.median(times), "scrape_ms_max": max(times),
                "exposition_bytes": size, "cgroup_series": series, "start_seconds": start_s}
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        for d in reversed(dirs):
            for _ in range(100):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.01)
        os.rmdir(base)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--window", type=float, default=10.0, help="CPU window, seconds")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = parser.parse_args()
    root = cgroup2_root()
    if os.geteuid() != 0 or not root:
        print("bench-cgroups: needs root and a cgroup v2 mount; skipped")
        return 77
    daemon = os.path.join(args.build, "daemon", "pmu-exporter")
    counts = [int(c) for c in args.counts.split(",")]
    tmp = tempfile.mkdtemp(prefix="pmu-bench-cgroups-")
    results = []
    try:
        for count in counts:
            for mode in MODES:
                r = run_one(daemon, root, mode, count, args.window, tmp)
                print(f"{mode:4} {count:5} cgroups: {r['fds']:5} fds, {r['cpu_percent']:6.2f}% CPU, "
                      f"scrape {r['scrape_ms_median']:.1f} ms (max {r['scrape_ms_max']:.1f}), "
                      f"{r['exposition_bytes']} bytes, {r['cgroup_series']} cgroup series",
                      flush=True)
                results.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "kernel": os.uname().release, "events": EVENTS,
            "interval": "100ms", "window_seconds": args.window}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cgroups.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    lines = ["# Per-cgroup attribution at scale", "",
             f"{meta['date']}, kernel {meta['kernel']}, {meta['cpus']} CPUs, "
             f"{len(EVENTS)} software events ({', '.join(EVENTS)}), sampling every 100 ms, "
             f"CPU over {args.window:.0f} s, 20 sequential scrapes. "
             "Method: bench/cgroups/run_cgroup_bench.py.", "",
             "| cgroups | mode | fds | daemon CPU % | scrape median ms | scrape max ms "
             "| exposition bytes | start s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['cgroups']} | {r['mode']} | {r['fds']} | {r['cpu_percent']:.2f} "
                     f"| {r['scrape_ms_median']:.1f} | {r['scrape_ms_max']:.1f} "
                     f"| {r['exposition_bytes']} | {r['start_seconds']:.1f} |")
    with open(os.path.join(args.out, "cgroups.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
