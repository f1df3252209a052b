#!/usr/bin/env python3
"""pmu-exporter benchmark driver (`make bench`).

Runs, on this machine and in one go:
  * read cost of a perf group by path (bench_read_path, bench_rseq),
  * the synthetic N CPUs x M events scale benchmark (bench_scale),
  * the daemon's CPU overhead at 1 s, 100 ms and 10 ms sampling,
  * the daemon beside the floor program (bench/floor: the least a per-CPU
    sampler of the same perf group can cost) at 10 ms, 100 ms and 1 s,
  * /metrics latency and throughput with wrk, exposition size, RSS,
  * the same for Debian's prometheus-node-exporter with only its perf
    collector, side by side,
and writes bench/results/latest.json and latest.md. docs/BENCHMARKS.md
describes every method. Standard library only.
"""

import argparse
import datetime
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The software events node_exporter 1.5's perf collector counts (its hardware
# and cache profilers find no PMU here); profile "perf-only" counts the same.
NODE_SOFTWARE_EVENTS = ["context-switches", "cpu-migrations", "page-faults",
                        "minor-faults", "major-faults"]
WRK_CONNECTIONS = [1, 8, 64]
# One wrk thread drives every closed-loop row: with two on a 2-vCPU machine
# the load generator holds both CPUs and a request waits for the server thread
# to get one back (the landing page, which renders nothing, then has the same
# 3.6-4 ms p99). The row OVERSUBSCRIBED_CONNECTIONS with two wrk threads is
# kept to show that wait.
WRK_THREADS = 1
OVERSUBSCRIBED_CONNECTIONS = 8
OVERSUBSCRIBED_THREADS = 2
# Latency under load that does not saturate the machine: PACED_CONNECTIONS
# connections, each asking again PACED_DELAY_MS after its previous answer
# (wrk's delay() hook), one wrk thread.
PACED_CONNECTIONS = 8
PACED_DELAY_MS = 5
SCALE_CPUS = [64, 256, 1024]
SCALE_EVENTS = [8, 16]
READ_EVENTS = [1, 4, 8]
KIB = 1024.0

TARGETS_NOTE = "targets from issues 7 and 15"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- machine ------------------------------------------------------------------

def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def loadavg():
    return [float(x) for x in read_file("/proc/loadavg", "0 0 0").split()[:3]]


def cpu_jiffies():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in read_file("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


class MachineLoad:
    """Load average and machine-wide busy % between start() and stop()."""

    def __init__(self):
        self.start_load = loadavg()
        self.start_cpu = cpu_jiffies()

    def stop(self):
        busy0, total0 = self.start_cpu
        busy1, total1 = cpu_jiffies()
        dt = max(total1 - total0, 1)
        return {"loadavg_start": self.start_load, "loadavg_end": loadavg(),
                "machine_busy_pct": round(100.0 * (busy1 - busy0) / dt, 1)}


def online_cpus():
    return read_file("/sys/devices/system/cpu/online", "0").strip()


def machine_description(daemon, tmp):
    model = ""
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in read_file("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    pmus = sorted(os.listdir("/sys/bus/event_source/devices")) \
        if os.path.isdir("/sys/bus/event_source/devices") else []
    supported = daemon_supported_events(daemon, tmp)
    virt = {}
    for kind in ("vm", "container"):
        if shutil.which("systemd-detect-virt"):
            virt[kind] = subprocess.run(["systemd-detect-virt", f"--{kind}"],
                                        capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": model,
        "cores_online": os.cpu_count(),
        "cpus_online": online_cpus(),
        "kernel": os.uname().release,
        "memory_mib": round(mem_kib / KIB),
        "virtualization": virt,
        "hypervisor_flag": " hypervisor " in read_file("/proc/cpuinfo").replace("\n", " "),
        "perf_event_paranoid": read_file("/proc/sys/kernel/perf_event_paranoid").strip(),
        "event_source_pmus": pmus,
        "hardware_pmu": supported.get("cycles") == 1,
        "pmu_event_supported": supported,
    }


def daemon_supported_events(daemon, tmp):
    """pmu_event_supported{event} from the daemon's --once output."""
    cfg = write_config(tmp, "once", "100ms", profile="default", port_file=None)
    out = subprocess.run([daemon, "--config", cfg, "--once"], capture_output=True,
                         text=True, timeout=60)
    result = {}
    for m in re.finditer(r'^pmu_event_supported\{event="([^"]+)"\} (\S+)$', out.stdout, re.M):
        result[m.group(1)] = int(float(m.group(2)))
    return result


# ---- processes ------------------------------------------------------------------

class Process:
    """A process this driver started; stopped by its own pid only."""

    started = []

    def __init__(self, name, argv, log_path):
        self.name = name
        self.log = open(log_path, "w")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid
        self.port = None
        Process.started.append(self)

    def cpu_seconds(self):
        stat = read_file(f"/proc/{self.pid}/stat")
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] is field 3 (state); utime, stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def cpu_seconds_schedstat(self):
        """Sum of every thread's run time (ns resolution), or None without schedstat."""
        total = 0
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return None
        for tid in tids:
            text = read_file(f"/proc/{self.pid}/task/{tid}/schedstat")
            if not text:
                return None
            total += int(text.split()[0])
        return total / 1e9

    def status_kib(self, key):
        for line in read_file(f"/proc/{self.pid}/status").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
        if self in Process.started:
            Process.started.remove(self)

    @classmethod
    def stop_all(cls):
        for p in list(cls.started):
            p.stop()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/metrics", timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        conn.close()


def wait_ready(proc, port_file=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see its log")
        if proc.port is None and port_file and os.path.exists(port_file):
            text = read_file(port_file).strip()
            if text.isdigit():
                proc.port = int(text)
        if proc.port is not None:
            try:
                if http_get(proc.port, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not serve /metrics within {timeout} s")


def write_config(tmp, name, interval, profile, port_file):
    lines = ["[exporter]", 'listen = "127.0.0.1:0"']
    if port_file:
        lines.append(f'port_file = "{port_file}"')
    lines += ["", "[sampling]", f'interval = "{interval}"', "",
              "[log]", 'level = "warn"', 'target = "stderr"', ""]
    if profile == "perf-only":
        lines += ["[stats]", "proc_stat = false", "softirqs = false", "schedstat = false",
                  "cpufreq = false", ""]
        for ev in NODE_SOFTWARE_EVENTS:
            lines += ["[[events]]", f'name = "{ev}"', f'event = "{ev}"', ""]
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def start_daemon(daemon, tmp, name, interval, profile):
    port_file = os.path.join(tmp, f"{name}.port")
    if os.path.exists(port_file):  # from an earlier run: never read a stale port
        os.remove(port_file)
    cfg = write_config(tmp, name, interval, profile, port_file)
    proc = Process(name, [daemon, "--config", cfg], os.path.join(tmp, f"{name}.log"))
    wait_ready(proc, port_file)
    return proc


def start_node_exporter(tmp):
    port = free_port()
    argv = ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.perf",
            f"--collector.perf.cpus={online_cpus()}", "--web.disable-exporter-metrics",
            "--web.max-requests=0", f"--web.listen-address=127.0.0.1:{port}"]
    proc = Process("node_exporter", argv, os.path.join(tmp, "node_exporter.log"))
    proc.port = port
    proc.argv = argv
    wait_ready(proc)
    return proc


# ---- google-benchmark programs ----------------------------------------------------

def run_gbench(binary, extra, tmp, name):
    out = os.path.join(tmp, f"{name}.json")
    argv = [binary, f"--benchmark_out={out}", "--benchmark_out_format=json",
            "--benchmark_min_time=0.3", "--benchmark_repetitions=3",
            "--benchmark_report_aggregates_only=true"] + extra
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"{os.path.basename(binary)} failed: {res.stderr[-2000:]}")
    with open(out) as f:
        data = json.load(f)
    # Median of the repetitions, by run name.
    return {b["run_name"]: b for b in data["benchmarks"]
            if b.get("aggregate_name") == "median" and not b.get("error_occurred")}


def to_ns(bench):
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[bench.get("time_unit", "ns")]
    return bench["real_time"] * scale


def bench_read_paths(build, tmp):
    runs = run_gbench(os.path.join(build, "bench/collectors/bench_read_path"), [], tmp,
                      "read_path")
    rows = []
    for events in READ_EVENTS:
        row = {"events": events}
        for remote, key in ((0, "read_local_ns"), (1, "read_remote_ns")):
            b = runs.get(f"BM_GroupRead/events:{events}/remote:{remote}/real_time")
            row[key] = round(to_ns(b), 1) if b else None
        rows.append(row)
    return rows


def bench_rdpmc_fake_pages(build, tmp):
    """rdpmc section on fake pages, from bench_rseq (owned by the rseq work)."""
    binary = os.path.join(build, "bench/rseq/bench_rseq")
    if not os.path.exists(binary):
        return {"note": "bench_rseq not built: not measured"}
    try:
        runs = run_gbench(binary, ["--benchmark_filter=BM_ReadSectionFakePages"], tmp, "rseq")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return {"note": f"bench_rseq failed: not measured ({str(e)[:200]})"}
    result = {}
    for name, b in runs.items():
        m = re.search(r"(?:events:|/)(\d+)(?:/|$)", name)
        # Without an argument the section reads bench_rseq's kGroupSize = 4 pages.
        events = int(m.group(1)) if m else 4
        result[str(events)] = round(to_ns(b), 1)
    return {"ns_by_events": result,
            "note": "bench_rseq BM_ReadSectionFakePages (pinned to CPU 0, fake counter pages)"}


def bench_ring_push(build, tmp):
    """One record pushed into the rseq ring and drained (bench_rseq, one thread), ns."""
    binary = os.path.join(build, "bench/rseq/bench_rseq")
    try:
        runs = run_gbench(binary, ["--benchmark_filter=BM_RingRseqPushDrain"], tmp, "ring")
    except (RuntimeError, subprocess.TimeoutExpired, OSError):
        return None
    one = [to_ns(b) for name, b in runs.items() if name.endswith("threads:1")]
    return round(min(one), 1) if one else None


SCALE_MODEL_CPUS = [64, 192, 512]
SCALE_MODEL_GROUPS = [8, 64]


def scale_model(floor, read_path, push_ns, scale_rows):
    """The per-CPU cost model measured here, extrapolated to bigger hosts.

    Per CPU and tick a thread per CPU pays a wake-up W, a local group read
    R_local and a push P; the aggregator adds A per series ingested. W comes
    from the floor (its whole per-tick cost minus its read). A design with one
    thread per G CPUs pays W once per G CPUs but reads remotely (R_remote, an
    IPI to the counted CPU, whose own cost the reader's run time does not
    show)."""
    read1 = next((r for r in read_path if r["events"] == 1), read_path[0])
    r_local = (read1["read_local_ns"] or 0) / 1e3
    r_remote = (read1["read_remote_ns"] or 0) / 1e3
    push = (push_ns or 0) / 1e3
    big = scale_rows[-1]
    ingest = big["aggregate_us"] / big["series"]  # us per series per round
    model = {"read_local_us": round(r_local, 2), "read_remote_us": round(r_remote, 2),
             "push_us": round(push, 3), "ingest_us_per_series": round(ingest, 4), "rows": []}
    ticks = {"10ms": 100, "100ms": 10, "1s": 1}
    cpus_here = None
    for f in floor:
        if f["interval"] not in ticks:
            continue
        cpus_here = cpus_here or f.get("cpus") or os.cpu_count()
        tick_us = f["floor_pct_of_one_core"] / 100 * 1e6 / (cpus_here * ticks[f["interval"]])
        wake = max(tick_us - r_local, 0.0)
        model.setdefault("wake_us", {})[f["interval"]] = round(wake, 1)
        for n in SCALE_MODEL_CPUS:
            per_tick = {"thread_per_cpu": n * (wake + r_local + push + 2 * ingest)}
            for g in SCALE_MODEL_GROUPS:
                per_tick[f"thread_per_{g}_cpus"] = (n / g) * wake + n * (r_remote + push +
                                                                         2 * ingest)
            model["rows"].append({
                "interval": f["interval"], "cpus": n,
                **{k: round(v * ticks[f["interval"]] / 1e4, 3) for k, v in per_tick.items()},
            })
    # Grouping G CPUs saves W (1 - 1/G) per CPU and tick and costs R_remote - R_local.
    w = model.get("wake_us", {}).get("100ms")
    if w:
        extra = r_remote - r_local
        model["crossover_group"] = next((g for g in range(2, 1025) if w * (1 - 1 / g) > extra),
                                        None)
    return model


def bench_scale(build, tmp):
    binary = os.path.join(build, "bench/scale/bench_scale")
    rows = []
    for cpus in SCALE_CPUS:
        for events in SCALE_EVENTS:
            # One process per size, so its RSS is that size's alone.
            runs = run_gbench(binary, [f"--benchmark_filter=/cpus:{cpus}/events:{events}$"],
                              tmp, f"scale_{cpus}_{events}")
            agg = runs[f"BM_Aggregate/cpus:{cpus}/events:{events}"]
            scr = runs[f"BM_Scrape/cpus:{cpus}/events:{events}"]
            rows.append({
                "cpus": cpus, "events": events, "series": cpus * events,
                "samples_per_round": int(agg["samples_per_round"]),
                "aggregate_us": round(to_ns(agg) / 1e3, 2),
                "scrape_ms": round(to_ns(scr) / 1e6, 3),
                "scrape_split_ms": {k: round(scr[f"{k}_ms"], 4)
                                    for k in ("snapshot", "render", "serve")},
                # The rendering thread's CPU time: what other load does not inflate.
                "render_cpu_ms": round(scr.get("render_cpu_ms", float("nan")), 4),
                "exposition_bytes": int(scr["exposition_bytes"]),
                "rss_mib": round(scr["rss_kib"] / KIB, 1),
                "hwm_mib": round(scr["hwm_kib"] / KIB, 1),
                "rss_base_mib": round(scr["rss_base_kib"] / KIB, 1),
            })
    return rows


def best_rows(runs, keys, time_keys):
    """Rows of several runs of a micro benchmark merged: per row, the run with the
    lowest value of the first time key (the figures of one row stay together)."""
    merged = []
    for i in range(len(runs[0])):
        candidates = [run[i] for run in runs]
        pick = min(candidates, key=lambda r: r[time_keys[0]] if r[time_keys[0]] is not None
                   else math.inf)
        row = dict(pick)
        for k in time_keys[1:]:
            values = [r[k] for r in candidates if r[k] is not None]
            row[k] = min(values) if values else None
        row["runs"] = [{k: r[k] for k in keys + time_keys} for r in candidates]
        merged.append(row)
    return merged


def loglog_slope(xs, ys):
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-12)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den if den else 0.0


def scale_growth(rows):
    """Exponent k of value ~ (N x M)^k, and the per-series cost at each end."""
    xs = [r["series"] for r in rows]
    growth = {}
    for key in ("aggregate_us", "scrape_ms", "exposition_bytes", "rss_mib"):
        ys = [r[key] for r in rows]
        if key == "rss_mib":  # what the data adds on top of the empty process
            ys = [max(r["rss_mib"] - r["rss_base_mib"], 0.01) for r in rows]
        small, large = rows[0], rows[-1]
        growth[key] = {
            "exponent": round(loglog_slope(xs, ys), 2),
            "per_series_smallest": ys[0] / small["series"],
            "per_series_largest": ys[-1] / large["series"],
        }
    return growth


# ---- whole-process figures ----------------------------------------------------------

class Scraper(threading.Thread):
    """GETs /metrics of every target once per `period` seconds until stopped."""

    def __init__(self, procs, period=1.0):
        super().__init__(daemon=True)
        self.procs, self.period = procs, period
        self.stop_event = threading.Event()
        self.ok = {p.name: 0 for p in procs}
        self.failed = {p.name: 0 for p in procs}

    def run(self):
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            for p in self.procs:
                try:
                    good = http_get(p.port)[0] == 200
                except OSError:
                    good = False
                (self.ok if good else self.failed)[p.name] += 1
            next_at += self.period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def finish(self):
        self.stop_event.set()
        self.join()


def measure_overhead(procs, window):
    """% of one core (utime+stime) of each process over `window` seconds."""
    scraper = Scraper(procs)
    load = MachineLoad()
    t0 = time.monotonic()
    c0 = {p.name: p.cpu_seconds() for p in procs}
    s0 = {p.name: p.cpu_seconds_schedstat() for p in procs}
    scraper.start()
    time.sleep(window)
    c1 = {p.name: p.cpu_seconds() for p in procs}
    s1 = {p.name: p.cpu_seconds_schedstat() for p in procs}
    t1 = time.monotonic()
    scraper.finish()
    result = {"window_s": round(t1 - t0, 2), "scrape_period_s": 1.0, **load.stop()}
    for p in procs:
        sched = None
        if s0[p.name] is not None and s1[p.name] is not None:
            sched = round(100.0 * (s1[p.name] - s0[p.name]) / (t1 - t0), 4)
        result[p.name] = {
            "cpu_pct_of_one_core": round(100.0 * (c1[p.name] - c0[p.name]) / (t1 - t0), 3),
            "cpu_seconds": round(c1[p.name] - c0[p.name], 3),
            "cpu_pct_schedstat": sched,
            "scrapes_ok": scraper.ok[p.name], "scrapes_failed": scraper.failed[p.name],
        }
    return result


UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_wrk(text):
    out = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        out[f"p{pct}_ms"] = round(float(m.group(1)) * UNIT_US[m.group(2)] / 1e3, 3) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["requests_per_s"] = round(float(m.group(1)), 1) if m else None
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:(.*)", text)
    out["socket_errors"] = m.group(1).strip() if m else ""
    return out


class RssSampler(threading.Thread):
    """Largest VmRSS seen every 100 ms while running."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.max_kib = proc, 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(0.1):
            self.max_kib = max(self.max_kib, self.proc.status_kib("VmRSS"))

    def finish(self):
        self.stop_event.set()
        self.join()
        return self.max_kib


def wrk(proc, conns, duration, paced_script=None, threads=WRK_THREADS):
    load = MachineLoad()
    script = ["-s", paced_script] if paced_script else []
    res = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
                          "--latency", *script, f"http://127.0.0.1:{proc.port}/metrics"],
                         capture_output=True, text=True, timeout=duration + 60)
    return {"connections": conns, "threads": threads, **parse_wrk(res.stdout), **load.stop()}


def paced_script(tmp):
    path = os.path.join(tmp, "paced.lua")
    with open(path, "w") as f:
        f.write(f"function delay()\n  return {PACED_DELAY_MS}\nend\n")
    return path


def measure_http(procs, duration, label, tmp):
    """wrk on every process at every concurrency, then paced, then with two
    wrk threads; the processes take turns at each, so the rows compared with
    each other are minutes apart at most. Returns rows, paced rows,
    oversubscribed rows and memory per process."""
    rows = {name: [] for name in procs}
    paced, oversubscribed = {}, {}
    samplers = {name: RssSampler(p) for name, p in procs.items()}
    for sampler in samplers.values():
        sampler.start()
    for conns in WRK_CONNECTIONS:
        log(f"{label}: wrk at {conns} connection(s) on {', '.join(procs)} ({duration} s each)")
        for name, proc in procs.items():
            rows[name].append(wrk(proc, conns, duration))
    log(f"{label}: wrk paced, {PACED_CONNECTIONS} connections each asking every "
        f"{PACED_DELAY_MS} ms, on {', '.join(procs)} ({duration} s each)")
    script = paced_script(tmp)
    for name, proc in procs.items():
        paced[name] = wrk(proc, PACED_CONNECTIONS, duration, script)
    log(f"{label}: wrk with {OVERSUBSCRIBED_THREADS} threads at {OVERSUBSCRIBED_CONNECTIONS} "
        f"connections on {', '.join(procs)} ({duration} s each)")
    for name, proc in procs.items():
        oversubscribed[name] = wrk(proc, OVERSUBSCRIBED_CONNECTIONS, duration,
                                   threads=OVERSUBSCRIBED_THREADS)
    memory = {}
    for name, sampler in samplers.items():
        memory[name] = {"rss_under_load_mib": round(sampler.finish() / KIB, 1),
                        "hwm_mib": round(procs[name].status_kib("VmHWM") / KIB, 1)}
    return rows, paced, oversubscribed, memory


def whole_process_run(daemon, tmp, window, wrk_duration, label):
    """One complete round of overhead, HTTP and memory figures."""
    log(f"{label}: starting pmu-exporter (1s, 100ms, 10ms; default and perf-only) "
        "and node_exporter")
    run = {"label": label}
    try:
        procs = {
            "pmu_1s": start_daemon(daemon, tmp, "pmu_1s", "1s", "default"),
            "pmu_100ms": start_daemon(daemon, tmp, "pmu_100ms", "100ms", "default"),
            "pmu_10ms": start_daemon(daemon, tmp, "pmu_10ms", "10ms", "default"),
            "pmu_perf_only_1s": start_daemon(daemon, tmp, "pmu_perf_only_1s", "1s", "perf-only"),
            "node_exporter": start_node_exporter(tmp),
        }
        run["node_exporter_argv"] = procs["node_exporter"].argv
        time.sleep(3)
        run["rss_idle_mib"] = {n: round(p.status_kib("VmRSS") / KIB, 1) for n, p in procs.items()}
        log(f"{label}: CPU overhead window, {window} s, all five scraped every 1 s")
        run["overhead"] = measure_overhead(list(procs.values()), window)
        for name in ("pmu_100ms", "pmu_10ms"):
            procs.pop(name).stop()
        run["exposition_bytes"] = {n: len(http_get(p.port)[1]) for n, p in procs.items()}
        (run["http"], run["http_paced"], run["http_oversubscribed"],
         run["memory_under_load"]) = measure_http(
            procs, wrk_duration, label, tmp)
    finally:
        Process.stop_all()
    return run


# ---- summary -----------------------------------------------------------------------

def best(values, lower_is_better):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return min(values) if lower_is_better else max(values)


def best_http(rows):
    """The best p50, p99 and requests/s of one wrk row's runs."""
    return {"p50_ms": best([x["p50_ms"] for x in rows], True),
            "p99_ms": best([x["p99_ms"] for x in rows], True),
            "requests_per_s": best([x["requests_per_s"] for x in rows], False)}


def headline(runs):
    """Per figure, the best of the runs (others' load only ever makes them worse)."""
    h = {"runs": len(runs)}
    for name in ("pmu_1s", "pmu_100ms", "pmu_10ms", "pmu_perf_only_1s", "node_exporter"):
        h[f"cpu_pct_{name}"] = best([r["overhead"][name]["cpu_pct_of_one_core"] for r in runs],
                                    True)
        h[f"cpu_sched_pct_{name}"] = best([r["overhead"][name]["cpu_pct_schedstat"] for r in runs],
                                          True)
    for name in ("pmu_1s", "pmu_perf_only_1s", "node_exporter"):
        for i, conns in enumerate(WRK_CONNECTIONS):
            h[f"http_{name}_c{conns}"] = best_http([r["http"][name][i] for r in runs])
        h[f"http_paced_{name}"] = best_http([r["http_paced"][name] for r in runs])
        h[f"http_oversubscribed_{name}"] = best_http(
            [r["http_oversubscribed"][name] for r in runs])
        h[f"rss_idle_mib_{name}"] = best([r["rss_idle_mib"][name] for r in runs], True)
        h[f"rss_load_mib_{name}"] = best(
            [r["memory_under_load"][name]["rss_under_load_mib"] for r in runs], True)
        h[f"hwm_mib_{name}"] = best([r["memory_under_load"][name]["hwm_mib"] for r in runs], True)
        h[f"exposition_bytes_{name}"] = runs[-1]["exposition_bytes"][name]
    return h


def ratio(a, b):
    """a / b; None when either is unknown or b is 0 (below the measurement's resolution)."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def comparisons(h):
    rows = []
    for peer in ("pmu_perf_only_1s", "pmu_1s"):
        rows.append({"figure": "CPU (utime+stime) at 1 s, node_exporter / pmu-exporter",
                     "pmu": peer, "ratio": ratio(h["cpu_pct_node_exporter"], h[f"cpu_pct_{peer}"])})
        rows.append({"figure": "CPU (schedstat run time) at 1 s, node_exporter / pmu-exporter",
                     "pmu": peer, "ratio": ratio(h["cpu_sched_pct_node_exporter"],
                                                 h[f"cpu_sched_pct_{peer}"])})
        for conns in WRK_CONNECTIONS:
            ours, theirs = h[f"http_{peer}_c{conns}"], h[f"http_node_exporter_c{conns}"]
            rows.append({"figure": f"requests/s at {conns} connections, pmu-exporter / node_exporter",
                         "pmu": peer, "ratio": ratio(ours["requests_per_s"],
                                                     theirs["requests_per_s"])})
            rows.append({"figure": f"p99 at {conns} connections, node_exporter / pmu-exporter",
                         "pmu": peer, "ratio": ratio(theirs["p99_ms"], ours["p99_ms"])})
        rows.append({"figure": "RSS under load, node_exporter / pmu-exporter", "pmu": peer,
                     "ratio": ratio(h["rss_load_mib_node_exporter"], h[f"rss_load_mib_{peer}"])})
    return rows


def floor_headline(floor_runs):
    """Per interval, the run with the lowest ratio (others' load only adds noise)."""
    out = []
    for i in range(len(floor_runs[0])):
        rows = [run[i] for run in floor_runs if run[i]["ratio"] is not None]
        best_row = dict(min(rows, key=lambda r: r["ratio"]) if rows else floor_runs[0][i])
        best_row["runs"] = [run[i]["ratio"] for run in floor_runs]
        out.append(best_row)
    return out


def targets(h, scale, floor):
    big = next(r for r in scale["rows"] if r["cpus"] == 1024 and r["events"] == 16)
    render_ms, serve_ms = big["scrape_split_ms"]["render"], big["scrape_split_ms"]["serve"]
    def rps_ratio(name):
        values = [ratio(h[f"http_{name}_c{c}"]["requests_per_s"],
                        h[f"http_node_exporter_c{c}"]["requests_per_s"]) for c in WRK_CONNECTIONS]
        values = [v for v in values if v is not None]
        return min(values) if values else 0.0

    rss = max(h["rss_load_mib_pmu_1s"], h["hwm_mib_pmu_1s"])

    def row(name, value, target, met, unit=""):
        return {"target": name, "value": value, "goal": target, "unit": unit, "met": met}

    out = [
        row(f"daemon / floor CPU time at {f['interval']} sampling (schedstat, taking turns)",
            f["ratio"], "<= 1.5", f["ratio"] is not None and f["ratio"] <= 1.5, "x")
        for f in floor
    ]
    out += [
        row("CPU at 100 ms sampling", h["cpu_pct_pmu_100ms"], "< 0.5", h["cpu_pct_pmu_100ms"] < 0.5,
            "% of one core"),
        row("CPU at 10 ms sampling", h["cpu_pct_pmu_10ms"], "< 2", h["cpu_pct_pmu_10ms"] < 2.0,
            "% of one core"),
        row("/metrics p99 at 8 connections, closed loop, 1 wrk thread "
            f"(node_exporter: {fmt(h['http_node_exporter_c8']['p99_ms'], 3)} ms)",
            h["http_pmu_1s_c8"]["p99_ms"], "< 1",
            h["http_pmu_1s_c8"]["p99_ms"] is not None and h["http_pmu_1s_c8"]["p99_ms"] < 1.0, "ms"),
        row(f"/metrics p99 at {PACED_CONNECTIONS} clients, each asking every {PACED_DELAY_MS} ms "
            f"(node_exporter: {fmt(h['http_paced_node_exporter']['p99_ms'], 3)} ms)",
            h["http_paced_pmu_1s"]["p99_ms"], "< 1",
            h["http_paced_pmu_1s"]["p99_ms"] is not None and h["http_paced_pmu_1s"]["p99_ms"] < 1.0,
            "ms"),
        row("requests/s vs node_exporter, default config (worst of 1/8/64 connections)",
            rps_ratio("pmu_1s"), ">= 5", rps_ratio("pmu_1s") >= 5.0, "x"),
        row("requests/s vs node_exporter, perf-only profile = same events, no kernel stats "
            "(worst of 1/8/64 connections)",
            rps_ratio("pmu_perf_only_1s"), ">= 5", rps_ratio("pmu_perf_only_1s") >= 5.0, "x"),
        row("RSS (peak under scrape load, default config)", rss, "< 16", rss < 16.0, "MiB"),
        row("render of synthetic 1024 CPUs x 16 events (once per snapshot; wall clock, "
            f"thread CPU time {big.get('render_cpu_ms', float('nan')):.2f} ms)", render_ms, "< 5",
            render_ms < 5.0, "ms"),
        row("serve of synthetic 1024 CPUs x 16 events from the rendered copy", serve_ms, "< 0.5",
            serve_ms < 0.5, "ms"),
    ]
    return out


# ---- report ------------------------------------------------------------------------

def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_markdown(path, r):
    m, h = r["machine"], r["headline"]
    L = []
    L.append("# pmu-exporter benchmark results\n")
    L.append(f"Generated by `make bench` (bench/run_bench.py) on {r['started']}, "
             f"took {r['duration_s']:.0f} s. Method: docs/BENCHMARKS.md.\n")
    L.append("## Machine\n")
    L.append(f"- CPU: {m['cpu_model']}, {m['cores_online']} CPUs online ({m['cpus_online']}), "
             f"{m['memory_mib']} MiB; systemd-detect-virt: VM {m['virtualization'].get('vm', '?')}, "
             f"container {m['virtualization'].get('container', '?')}")
    L.append(f"- kernel {m['kernel']}, perf_event_paranoid {m['perf_event_paranoid']}, "
             f"perf PMUs in sysfs: {', '.join(m['event_source_pmus']) or 'none'}")
    hw = "yes" if m["hardware_pmu"] else "no (`pmu_event_supported{event=\"cycles\"} 0`)"
    L.append(f"- hardware PMU: {hw}; events the daemon can count: "
             + ", ".join(e for e, s in sorted(m["pmu_event_supported"].items()) if s))
    L.append(f"- load average at start {r['load_start']}, at end {r['load_end']} "
             f"(other work shared these {m['cores_online']} CPUs; every load-sensitive figure was "
             f"measured in {len(r['runs'])} round(s), one after the other; the headline takes "
             "the best round per figure)\n")

    L.append("## Targets\n")
    L.append("| target | goal | measured | |")
    L.append("|---|---|---|---|")
    for t in r["targets"]:
        L.append(f"| {t['target']} | {t['goal']} {t['unit']} | {fmt(t['value'], 3)} {t['unit']} | "
                 f"{'met' if t['met'] else '**missed**'} |")
    L.append("")

    L.append("## The floor: the daemon beside the least a sampler can cost\n")
    L.append("bench/floor/floor: one pinned thread per online CPU waking on an absolute schedule "
             "and read()ing one perf group of cpu-clock + context-switches, nothing else. "
             "Taking turns with it (four windows of each, the daemon stopped while a floor "
             "runs), the daemon with the default configuration (kernel statistics and built-in "
             "derived metrics on) counting the same two events in one group at the same "
             "interval, scraped every 15 s as Prometheus scrapes (kept-alive connection, gzip). "
             "CPU = run time of all threads (/proc/<pid>/task/*/schedstat). Headline: the best "
             "run per interval. Last two columns: a second floor, the same program that also "
             "preads /proc/stat on the lowest CPU once a second, as the default "
             "cpu_busy_ratio (1 s /proc/stat windows) must, taking its own turns.\n")
    L.append("| sampling | window | floor (% of one core) | daemon (% of one core) | "
             "daemon / floor | runs | floor + 1 s /proc/stat read (% of one core) | "
             "daemon / that |")
    L.append("|---|---|---|---|---|---|---|---|")
    for f in r["floor"]:
        L.append(f"| {f['interval']} | {f['window_s']:.0f} s | {f['floor_pct_of_one_core']:.3f} | "
                 f"{f['daemon_pct_of_one_core']:.3f} | {fmt(f['ratio'])} x | "
                 f"{', '.join(fmt(x) for x in f['runs'])} | "
                 f"{fmt(f.get('floor_stat_pct_of_one_core'), 3)} | "
                 f"{fmt(f.get('ratio_floor_stat'))} x |")
    L.append("")

    L.append("## Read cost per CPU per tick (one group read; median of 3 repetitions, best round)\n")
    rd = r["rdpmc_fake_pages"].get("ns_by_events", {})
    L.append("| events in group | read() on the CPU itself | read() from another CPU | "
             "rdpmc section, fake pages |")
    L.append("|---|---|---|---|")
    for row in r["read_path"]:
        rdpmc = f"{rd[str(row['events'])]:.1f} ns" if str(row["events"]) in rd else "not measured"
        L.append(f"| {row['events']} | {fmt(row['read_local_ns'], 0)} ns | "
                 f"{fmt(row['read_remote_ns'], 0)} ns | {rdpmc} |")
    L.append(f"\nrdpmc: {r['rdpmc_fake_pages'].get('note', '')}; no hardware PMU here, so rdpmc "
             "of real counters cannot run.\n")

    L.append("## Daemon CPU overhead (% of one core: utime+stime, in brackets the threads' "
             "schedstat run time)\n")
    L.append("| process | sampling | " + " | ".join(f"run {i + 1}" for i in range(len(r["runs"])))
             + " | headline |")
    L.append("|---|---|" + "---|" * len(r["runs"]) + "---|")
    for name, what in (("pmu_1s", "1 s, default events"), ("pmu_100ms", "100 ms, default events"),
                       ("pmu_10ms", "10 ms, default events"),
                       ("pmu_perf_only_1s", "1 s, node_exporter's software events, no kernel stats"),
                       ("node_exporter", "perf collector, read on each scrape")):
        vals = " | ".join(f"{run['overhead'][name]['cpu_pct_of_one_core']:.3f} "
                          f"({fmt(run['overhead'][name]['cpu_pct_schedstat'], 3)})"
                          for run in r["runs"])
        L.append(f"| {name} | {what} | {vals} | {h[f'cpu_pct_{name}']:.3f} "
                 f"({fmt(h[f'cpu_sched_pct_{name}'], 3)}) |")
    for i, run in enumerate(r["runs"]):
        o = run["overhead"]
        L.append(f"\nrun {i + 1}: {o['window_s']} s window, every process scraped every 1 s, "
                 f"load {o['loadavg_start']} -> {o['loadavg_end']}, machine busy "
                 f"{o['machine_busy_pct']}%")
    L.append("")

    L.append(f"## /metrics over HTTP (wrk --latency, {r['wrk_duration_s']} s per row, "
             f"{WRK_THREADS} wrk thread; headline = best of runs)\n")
    L.append("| process | connections | p50 ms | p99 ms | requests/s | exposition bytes |")
    L.append("|---|---|---|---|---|---|")
    for name in ("pmu_1s", "pmu_perf_only_1s", "node_exporter"):
        for conns in WRK_CONNECTIONS:
            x = h[f"http_{name}_c{conns}"]
            L.append(f"| {name} | {conns} | {fmt(x['p50_ms'], 3)} | {fmt(x['p99_ms'], 3)} | "
                     f"{fmt(x['requests_per_s'], 0)} | {h[f'exposition_bytes_{name}']} |")
    L.append("")
    L.append(f"Paced ({PACED_CONNECTIONS} connections, each asking again {PACED_DELAY_MS} ms after "
             "its previous answer, 1 wrk thread): the latency a scrape sees when the machine is "
             "not saturated. Oversubscribed (last rows, "
             f"{OVERSUBSCRIBED_CONNECTIONS} connections, {OVERSUBSCRIBED_THREADS} wrk threads): "
             "the two wrk threads and the server want three CPUs of the two, and the p99 "
             "includes waits for a CPU. Above, one wrk thread and the server have a CPU each.\n")
    L.append("| process | connections | p50 ms | p99 ms | requests/s |")
    L.append("|---|---|---|---|---|")
    for key, connections in (
            ("http_paced", f"{PACED_CONNECTIONS} paced"),
            ("http_oversubscribed",
             f"{OVERSUBSCRIBED_CONNECTIONS}, {OVERSUBSCRIBED_THREADS} wrk threads")):
        for name in ("pmu_1s", "pmu_perf_only_1s", "node_exporter"):
            x = h[f"{key}_{name}"]
            L.append(f"| {name} | {connections} | {fmt(x['p50_ms'], 3)} | "
                     f"{fmt(x['p99_ms'], 3)} | {fmt(x['requests_per_s'], 0)} |")
    L.append("")
    for i, run in enumerate(r["runs"]):
        L.append(f"run {i + 1} detail: " + "; ".join(
            f"{n} c{x['connections']}: p99 {fmt(x['p99_ms'], 3)} ms, {fmt(x['requests_per_s'], 0)}"
            f" req/s, load {x['loadavg_start'][0]}, non-2xx {x['non_2xx']}"
            for n, rows in run["http"].items() for x in rows))
        L.append("")

    L.append("## Memory (MiB)\n")
    L.append("| process | VmRSS idle | VmRSS under wrk load (max) | VmHWM after load |")
    L.append("|---|---|---|---|")
    for name in ("pmu_1s", "pmu_perf_only_1s", "node_exporter"):
        L.append(f"| {name} | {h[f'rss_idle_mib_{name}']} | {h[f'rss_load_mib_{name}']} | "
                 f"{h[f'hwm_mib_{name}']} |")
    L.append("")

    L.append("## Side by side with node_exporter (ratios, > 1 favours pmu-exporter)\n")
    L.append(f"node_exporter: `{' '.join(r['runs'][-1]['node_exporter_argv'])}`\n")
    L.append("| figure | pmu-exporter profile | ratio |")
    L.append("|---|---|---|")
    for c in r["comparisons"]:
        L.append(f"| {c['figure']} | {c['pmu']} | {fmt(c['ratio'])} |")
    L.append("")

    s = r["scale"]
    L.append("## Scale: synthetic N CPUs x M events through the real aggregator and exporter\n")
    L.append("Median of 3 repetitions; per size the round with the fastest scrape.\n")
    L.append("| CPUs | events | series | aggregation (one round) | scrape | of which snapshot / "
             "render (once per snapshot) | render CPU time | serve from the rendered copy | "
             "exposition | RSS after / peak (empty process) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for x in s["rows"]:
        sp = x["scrape_split_ms"]
        L.append(f"| {x['cpus']} | {x['events']} | {x['series']} | {x['aggregate_us']:.1f} us | "
                 f"{x['scrape_ms']:.2f} ms | {sp['snapshot']:.2f} / {sp['render']:.2f} ms | "
                 f"{x.get('render_cpu_ms', float('nan')):.2f} ms | {sp['serve'] * 1e3:.2f} us | {x['exposition_bytes'] / 1e6:.2f} MB | "
                 f"{x['rss_mib']} / {x['hwm_mib']} MiB ({x['rss_base_mib']}) |")
    L.append("")
    g = s["growth"]
    L.append("Growth with N x M (least-squares exponent k of value ~ (N x M)^k over the six "
             "sizes; per-series cost at the smallest and the largest size):\n")
    L.append(f"- aggregation: k = {g['aggregate_us']['exponent']}, "
             f"{g['aggregate_us']['per_series_smallest'] * 1e3:.1f} -> "
             f"{g['aggregate_us']['per_series_largest'] * 1e3:.1f} ns per series")
    L.append(f"- scrape: k = {g['scrape_ms']['exponent']}, "
             f"{g['scrape_ms']['per_series_smallest'] * 1e6:.0f} -> "
             f"{g['scrape_ms']['per_series_largest'] * 1e6:.0f} ns per series")
    L.append(f"- exposition: k = {g['exposition_bytes']['exponent']}, "
             f"{g['exposition_bytes']['per_series_smallest']:.0f} -> "
             f"{g['exposition_bytes']['per_series_largest']:.0f} bytes per series")
    L.append(f"- RSS after the scrapes, above the empty process: k = {g['rss_mib']['exponent']}, "
             f"{g['rss_mib']['per_series_smallest'] * KIB * KIB:.0f} -> "
             f"{g['rss_mib']['per_series_largest'] * KIB * KIB:.0f} bytes per series")
    L.append("")
    sm = r.get("scale_model")
    if sm and sm.get("rows"):
        L.append("## Scale model: a thread per CPU at 64, 192 and 512 CPUs\n")
        L.append("Measured here, per CPU and tick: wake-up W (the floor's per-tick run time minus "
                 f"its read) {', '.join(f'{k} {v} us' for k, v in sm['wake_us'].items())}; "
                 f"read() of the group on its CPU {sm['read_local_us']} us, from another CPU "
                 f"(IPI) {sm['read_remote_us']} us; rseq ring push + drain {sm['push_us']} us; "
                 f"aggregation {sm['ingest_us_per_series'] * 1e3:.1f} ns per series. "
                 "Extrapolated (linear in CPUs; % of one core, reader side) for a thread per CPU "
                 "and for one thread per G CPUs reading remotely:\n")
        keys = [k for k in sm["rows"][0] if k not in ("interval", "cpus")]
        L.append("| sampling | CPUs | " + " | ".join(k.replace("_", " ") for k in keys) + " |")
        L.append("|---|---|" + "---|" * len(keys))
        for row in sm["rows"]:
            L.append(f"| {row['interval']} | {row['cpus']} | "
                     + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
        L.append("")
        L.append(f"Crossover: grouping G CPUs per thread saves W x (1 - 1/G) per CPU and tick and "
                 f"costs R_remote - R_local = {sm['read_remote_us'] - sm['read_local_us']:.1f} us; "
                 + (f"with this machine's W it pays from G = {sm['crossover_group']} on, in the "
                    if sm.get("crossover_group") else
                    "with this machine's W no G up to 1024 pays for it, ")
                 + "in the reader's run time (at 100 ms). That leaves out the IPI's cost on the counted CPU (an idle "
                 "CPU is woken by the IPI as it is by its own sampler's timer); docs/SCALE.md "
                 "says what this means for the design.\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


# ---- main --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="CMake build directory (default: build)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--window", type=float, default=30.0, help="CPU overhead window, s (>= 30)")
    ap.add_argument("--wrk-duration", type=int, default=10)
    ap.add_argument("--floor-window", type=float, default=20.0,
                    help="seconds per interval beside the floor (at least 30 intervals)")
    ap.add_argument("--rerun", choices=["auto", "always", "never"], default="auto",
                    help="repeat the load-sensitive figures at the end (auto: when the "
                         "1-minute load average was >= 1 at the start)")
    args = ap.parse_args()

    build = os.path.abspath(os.path.join(ROOT, args.build))
    daemon = os.path.join(build, "daemon", "pmu-exporter")
    for tool in ("wrk", "prometheus-node-exporter"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} missing; run scripts/install-deps.sh wrk prometheus-node-exporter")
    sys.path.insert(0, os.path.join(ROOT, "bench", "floor"))
    global run_floor
    import run_floor  # noqa: E402  (imports this module for its helpers)
    for binary in (daemon, os.path.join(build, "bench/floor/floor"),
                   os.path.join(build, "bench/collectors/bench_read_path"),
                   os.path.join(build, "bench/scale/bench_scale")):
        if not os.path.exists(binary):
            sys.exit(f"bench: {binary} missing; build first (with PMU_BUILD_BENCH=ON)")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t_start = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="pmu-bench-") as tmp:
        try:
            log("machine description (daemon --once)")
            machine = machine_description(daemon, tmp)
            read_runs, scale_runs, runs, floor_runs = [], [], [], []

            def one_round(label):
                log(f"{label}: read cost by path (bench_read_path)")
                read_runs.append(bench_read_paths(build, tmp))
                log(f"{label}: scale, synthetic N CPUs x M events (bench_scale)")
                scale_runs.append(bench_scale(build, tmp))
                runs.append(whole_process_run(daemon, tmp, args.window, args.wrk_duration, label))
                log(f"{label}: the daemon and the floor (bench/floor), taking turns")
                floor_runs.append(run_floor.measure_floor(build, tmp, args.floor_window))

            log("rdpmc section on fake pages (bench_rseq)")
            rdpmc = bench_rdpmc_fake_pages(build, tmp)
            log("ring push + drain (bench_rseq)")
            push_ns = bench_ring_push(build, tmp)
            one_round("run 1")
            busy = load_start[0] >= 1.0
            if args.rerun == "always" or (args.rerun == "auto" and busy):
                log(f"load average was {load_start[0]} at the start: re-running every "
                    "load-sensitive figure")
                one_round("run 2")
        finally:
            Process.stop_all()

    h = headline(runs)
    floor = floor_headline(floor_runs)
    read_path = best_rows(read_runs, ["events"], ["read_local_ns", "read_remote_ns"])
    scale_rows = best_rows(scale_runs, ["cpus", "events"], ["scrape_ms", "aggregate_us"])
    scale = {"rows": scale_rows, "growth": scale_growth(scale_rows)}
    result = {
        "started": started, "duration_s": round(time.monotonic() - t_start, 1),
        "window_s": args.window, "wrk_duration_s": args.wrk_duration,
        "load_start": load_start, "load_end": loadavg(), "machine": machine,
        "read_path": read_path, "rdpmc_fake_pages": rdpmc, "scale": scale,
        "runs": runs, "headline": h, "comparisons": comparisons(h),
        "floor": floor, "floor_runs": floor_runs,
        "scale_model": scale_model(floor, read_path, push_ns, scale_rows),
        "targets": targets(h, scale, floor), "targets_source": TARGETS_NOTE,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    write_markdown(os.path.join(args.out, "latest.md"), result)
    log(f"wrote {os.path.join(args.out, 'latest.md')} and latest.json "
        f"in {result['duration_s']:.0f} s")
    for t in result["targets"]:
        log(f"  {t['target']}: {fmt(t['value'], 3)} {t['unit']} (goal {t['goal']}) "
            f"{'met' if t['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
