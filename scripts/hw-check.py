#!/usr/bin/env python3
"""Hardware self-check: pmu-exporter's counts against perf stat on a host
with a hardware PMU (`make hw-check`; not part of `make test`).

  1. each read path forced in turn (auto = rdpmc where validated, read()
     on the CPU, read() from another CPU): per-CPU rates of cycles,
     instructions and branches against `perf stat -a -A` over the same
     window, within 0.5%;
  2. more events than counters (multiplexed): the scaled instructions rate
     against an unmultiplexed `perf stat`, within 5%;
  3. a concurrent `perf stat` with many events: the contention metrics
     (running ratio) react;
  4. user rdpmc switched off in sysfs at run time: no crash, the read path
     falls back, the rate does not jump.

The workload is a busy loop on every online CPU, so rates are steady and
two windows that do not start at the same instant still compare. Rates are
counts per enabled second (ours: pmu_events_total over
pmu_event_enabled_seconds_total; perf's: the count over its run time).

Without a hardware PMU it prints why and exits 0. `--software` runs the
same mechanics with software events, to check the script on any host.
"""
import argparse
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HW_EVENTS = ["cycles", "instructions", "branches"]
SW_EVENTS = ["cpu-clock", "task-clock"]  # steady under the busy loop
RDPMC_SYSFS = "/sys/bus/event_source/devices/cpu/rdpmc"
SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def online_cpus():
    cpus = []
    with open("/sys/devices/system/cpu/online") as f:
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def hardware_pmu():
    """None when this host has a usable hardware PMU, else the reason."""
    devices = "/sys/bus/event_source/devices"
    core = [d for d in ("cpu", "cpu_core", "cpu_atom") if os.path.exists(f"{devices}/{d}")]
    core += [d for d in os.listdir(devices) if d.startswith("armv8_pmuv3")]
    if not core:
        return f"no core PMU in {devices} (a VM without a virtual PMU?)"
    try:
        out = subprocess.run(["perf", "stat", "-x,", "-e", "cycles", "true"],
                             capture_output=True, text=True, timeout=30).stderr
    except FileNotFoundError:
        return "perf is not installed (Debian: linux-perf)"
    if "<not supported>" in out or "<not counted>" in out:
        return f"the {core[0]} PMU cannot count cycles here: {out.strip()}"
    return None


def spin():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    x = 0
    while True:
        x += 1


class Daemon:
    def __init__(self, binary, events, interval="100ms", read_path=None, groups=True):
        self.dir = tempfile.TemporaryDirectory(prefix="hw-check-")
        text = ['derived = []', '[exporter]', 'listen = "127.0.0.1:0"',
                f'port_file = "{self.dir.name}/port"', '[sampling]',
                f'interval = "{interval}"']
        for name, event in events:
            text += ['[[events]]', f'name = "{name}"', f'event = "{event}"']
            if groups:
                text.append('group = "g"')
        config = os.path.join(self.dir.name, "c.toml")
        with open(config, "w") as f:
            f.write("\n".join(text) + "\n")
        env = dict(os.environ)
        env.pop("PMU_EXPORTER_READ_PATH", None)
        if read_path:
            env["PMU_EXPORTER_READ_PATH"] = read_path
        self.log = open(os.path.join(self.dir.name, "log"), "w+")
        self.proc = subprocess.Popen([binary, "--config", config], env=env,
                                     stdout=self.log, stderr=self.log)
        port_file = os.path.join(self.dir.name, "port")
        deadline = time.time() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the daemon did not start:\n" + self.logtext())
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read().strip())

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def scrape(self):
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read()
        series = {}
        for line in body.decode().splitlines():
            m = SERIES.match(line)
            if m:
                labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
                series[(m.group(1), labels)] = float(m.group(3))
        return series

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.log.close()
        self.dir.cleanup()


def value(series, name, **labels):
    return series.get((name, tuple(sorted(labels.items()))))


def our_rates(s0, s1, cpu, event):
    """Counts per enabled second between two scrapes, or None."""
    c0, c1 = value(s0, "pmu_events_total", cpu=str(cpu), event=event), \
        value(s1, "pmu_events_total", cpu=str(cpu), event=event)
    e0 = value(s0, "pmu_event_enabled_seconds_total", cpu=str(cpu), event=event)
    e1 = value(s1, "pmu_event_enabled_seconds_total", cpu=str(cpu), event=event)
    if None in (c0, c1, e0, e1) or e1 <= e0:
        return None
    return (c1 - c0) / (e1 - e0)


def perf_rates(events, seconds, cpus=None):
    """{(cpu, event): counts per second of run time} from perf stat -a -A."""
    argv = ["perf", "stat", "-a", "-A", "-x,", "-e", ",".join(events)]
    if cpus is not None:
        argv += ["-C", ",".join(map(str, cpus))]
    out = subprocess.run(argv + ["--", "sleep", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60).stderr
    rates = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) < 5 or not f[0].startswith("CPU"):
            continue
        try:
            count, run_ns = float(f[1]), float(f[4])
        except ValueError:
            continue  # <not counted>, <not supported>
        if f[2] == "msec":
            count *= 1e6  # perf prints clocks in ms; the exporter counts ns
        if run_ns > 0:
            rates[(int(f[0][3:]), f[3].split(":")[0])] = count / (run_ns * 1e-9)
    return rates


def ours_vs_perf(daemon, events, seconds):
    s0 = daemon.scrape()
    theirs = perf_rates(events, seconds)
    s1 = daemon.scrape()
    return s0, s1, theirs


def current_path(series, cpu):
    for p in ("rdpmc", "local_read", "remote_read"):
        if value(series, "pmu_exporter_read_path", cpu=str(cpu), path=p) == 1:
            return p
    return "?"


class Table:
    def __init__(self):
        self.rows = []
        self.failed = 0

    def add(self, check, cpu, ours, theirs, limit, note=""):
        if ours is None or theirs is None or theirs == 0:
            err, ok = None, False
        else:
            err = (ours - theirs) / theirs
            ok = abs(err) <= limit
        self.failed += 0 if ok else 1
        self.rows.append((check, str(cpu),
                          "-" if ours is None else f"{ours:.6g}",
                          "-" if theirs is None else f"{theirs:.6g}",
                          "-" if err is None else f"{100 * err:+.3f}%",
                          f"±{100 * limit:g}%", "ok" if ok else "FAIL", note))

    def note(self, check, ok, note):
        self.failed += 0 if ok else 1
        self.rows.append((check, "-", "-", "-", "-", "-", "ok" if ok else "FAIL", note))

    def print(self):
        head = ("check", "cpu", "pmu-exporter /s", "perf stat /s", "error", "limit", "result", "")
        widths = [max(len(r[i]) for r in self.rows + [head]) for i in range(len(head))]
        for r in [head] + self.rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def check_paths(args, table, events):
    for path in ("auto", "read", "remote"):
        d = Daemon(args.binary, [(e, e) for e in events], read_path=path)
        try:
            time.sleep(1.5)  # rdpmc validation, a few intervals
            s0, s1, theirs = ours_vs_perf(d, events, args.seconds)
            for cpu in online_cpus():
                for e in events:
                    table.add(f"path={path} {e}", cpu, our_rates(s0, s1, cpu, e),
                              theirs.get((cpu, e)), 0.005, current_path(s1, cpu))
        finally:
            d.stop()


def check_multiplexing(args, table, event):
    # Twice as many events as any core PMU has counters, each its own group.
    n = args.multiplex_events
    d = Daemon(args.binary, [(f"{event}{i}", event) for i in range(n)], groups=False)
    try:
        time.sleep(1.5)
        s0 = d.scrape()
        time.sleep(args.seconds)
        s1 = d.scrape()
        theirs = perf_rates([event], args.seconds)
        for cpu in online_cpus():
            ratio = value(s1, "pmu_event_running_ratio", cpu=str(cpu), event=f"{event}0")
            table.add(f"multiplexed {event} x{n}", cpu, our_rates(s0, s1, cpu, f"{event}0"),
                      theirs.get((cpu, event)), 0.05,
                      f"running ratio {ratio:.2f}" if ratio is not None else "")
    finally:
        d.stop()


def check_contention(args, table, events):
    d = Daemon(args.binary, [(e, e) for e in events])
    try:
        time.sleep(1)
        quiet = min(value(d.scrape(), "pmu_event_running_ratio", cpu=str(c), event=events[0]) or 0
                    for c in online_cpus())
        burst = subprocess.Popen(["perf", "stat", "-a", "-e",
                                  ",".join([events[0]] * args.multiplex_events),
                                  "--", "sleep", str(args.seconds)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds / 2)
        busy = min(value(d.scrape(), "pmu_event_running_ratio", cpu=str(c), event=events[0]) or 0
                   for c in online_cpus())
        burst.wait()
        table.note("contention (concurrent perf stat)", busy < quiet,
                   f"lowest running ratio {quiet:.2f} alone, {busy:.2f} while perf stat ran")
    finally:
        d.stop()


def check_rdpmc_off(args, table, events):
    if not os.path.exists(RDPMC_SYSFS) or not os.access(RDPMC_SYSFS, os.W_OK):
        table.note("rdpmc switched off at run time", True,
                   f"skipped: {RDPMC_SYSFS} is absent or not writable")
        return
    with open(RDPMC_SYSFS) as f:
        saved = f.read().strip()
    d = Daemon(args.binary, [(e, e) for e in events])
    try:
        time.sleep(1.5)
        s0 = d.scrape()
        time.sleep(args.seconds)
        s1 = d.scrape()
        before_path = current_path(s1, online_cpus()[0])
        with open(RDPMC_SYSFS, "w") as f:
            f.write("0")
        time.sleep(args.seconds)
        s2 = d.scrape()
        after_path = current_path(s2, online_cpus()[0])
        table.note("rdpmc switched off: still running", d.alive(), d.logtext()[-300:]
                   if not d.alive() else f"read path {before_path} -> {after_path}")
        for cpu in online_cpus():
            table.add(f"rdpmc off: {events[0]} rate after/before", cpu,
                      our_rates(s1, s2, cpu, events[0]), our_rates(s0, s1, cpu, events[0]), 0.05)
    finally:
        with open(RDPMC_SYSFS, "w") as f:
            f.write(saved)
        d.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--multiplex-events", type=int, default=16)
    parser.add_argument("--software", action="store_true",
                        help="software events instead of hardware ones (checks the script)")
    args = parser.parse_args()
    args.binary = os.path.join(args.build, "daemon", "pmu-exporter")
    if os.geteuid() != 0:
        print("hw-check: needs root (CPU-wide events of every CPU, the rdpmc sysfs switch)")
        return 0
    events = SW_EVENTS if args.software else HW_EVENTS
    if not args.software:
        reason = hardware_pmu()
        if reason is not None:
            print(f"hw-check: nothing to check: {reason}")
            return 0
    workers = [multiprocessing.Process(target=spin, daemon=True) for _ in online_cpus()]
    for w in workers:
        w.start()
    table = Table()
    try:
        check_paths(args, table, events)
        check_multiplexing(args, table, events[1])
        if args.software:
            table.note("contention (concurrent perf stat)", True,
                       "skipped: software events never contend for counters")
            table.note("rdpmc switched off at run time", True, "skipped: software events")
        else:
            check_contention(args, table, events)
            check_rdpmc_off(args, table, events)
    finally:
        for w in workers:
            w.terminate()
    print(f"hw-check on {os.uname().nodename} ({os.uname().release}), "
          f"{len(online_cpus())} CPUs, {'software' if args.software else 'hardware'} events")
    table.print()
    print(f"hw-check: {len(table.rows) - table.failed} of {len(table.rows)} checks passed")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
