#!/usr/bin/env python3
"""Bounded soak of pmu-exporter (make soak).

Starts the built daemon on a free loopback port, puts it under load (wrk when
installed, else a small keep-alive client pool on loopback, plus connection
churn and malformed requests), sends SIGHUP every few seconds, and checks
every 100 ms with its own scrape that no counter (counter and histogram
series) ever decreases. After the load, RSS and the open descriptor count
must return to their start (RSS within a tolerance: the allocator keeps some
pages). Prints the figures; exit status 1 on any violation.
"""
import argparse
import http.client
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

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def monotonic_series(text):
    """{series: value} for counters and histogram parts."""
    types = {}
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        name = m.group(1)
        base = re.sub(r'_(bucket|sum|count)$', '', name)
        if types.get(name) == "counter" or types.get(base) == "histogram":
            out[name + (m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port, path="/metrics", timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def python_load(port, stop, counts, keepalive_clients):
    """Keep-alive scrapes (keepalive_clients threads) and, beside them,
    connections sending malformed or oversized requests."""
    def keepalive():
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                for _ in range(50):
                    if stop.is_set():
                        break
                    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                    conn.getresponse().read()
                    counts["requests"] += 1
                conn.close()
            except OSError:
                counts["errors"] += 1

    def hostile():
        junk = [b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
                b"\x16\x03\x01\x00\xff garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                b"POST /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"]
        i = 0
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(junk[i % len(junk)])
                    s.recv(4096)
                counts["hostile"] += 1
            except OSError:
                pass
            i += 1

    threads = [threading.Thread(target=keepalive) for _ in range(keepalive_clients)]
    threads.append(threading.Thread(target=hostile))
    for t in threads:
        t.start()
    return threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--reload-every", type=float, default=5.0)
    ap.add_argument("--rss-tolerance-kb", type=int, default=4096)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pmu-soak-")
    port_file = os.path.join(tmp, "port")
    config = os.path.join(tmp, "config.toml")
    with open(config, "w") as f:
        f.write(f'[exporter]\nlisten = "127.0.0.1:0"\nport_file = "{port_file}"\n'
                '[sampling]\ninterval = "100ms"\n')
    daemon = subprocess.Popen([args.binary, "--config", config], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "daemon.log"), "w"))
    failures = []
    try:
        deadline = time.time() + 15
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.05)
        if not os.path.exists(port_file):
            print("soak: the daemon did not start; see", os.path.join(tmp, "daemon.log"))
            return 1
        port = int(open(port_file).read())
        # Warm up: the first rounds, first scrapes and the render cache.
        for _ in range(20):
            scrape(port)
            time.sleep(0.05)
        rss_start, fds_start = rss_kb(daemon.pid), fd_count(daemon.pid)
        rss_peak, fds_peak = rss_start, fds_start

        stop = threading.Event()
        counts = {"requests": 0, "errors": 0, "hostile": 0}
        wrk = None
        threads = []
        if shutil.which("wrk"):
            wrk = subprocess.Popen(["wrk", "-t2", "-c64", f"-d{args.seconds}s",
                                    f"http://127.0.0.1:{port}/metrics"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            threads = python_load(port, stop, counts, 0)
            load = "wrk -t2 -c64 + 1 hostile client"
        else:
            threads = python_load(port, stop, counts, 4)
            load = "4 python keep-alive clients + 1 hostile client"

        last = {}
        scrapes = checker_failures = decreases = reloads = 0
        start = time.time()
        next_reload = start + args.reload_every
        while time.time() - start < args.seconds:
            t0 = time.time()
            try:
                status, body = scrape(port)
            except OSError as e:
                status, body = 0, str(e)
            scrapes += 1
            if status != 200:
                checker_failures += 1
                if checker_failures <= 5:
                    failures.append(f"checker scrape failed: {status} {body[:100]}")
            else:
                for key, value in monotonic_series(body).items():
                    if key in last and value < last[key]:
                        decreases += 1
                        if decreases <= 10:
                            failures.append(f"decreased: {key} {last[key]} -> {value}")
                    last[key] = value
            rss_peak = max(rss_peak, rss_kb(daemon.pid))
            fds_peak = max(fds_peak, fd_count(daemon.pid))
            if time.time() >= next_reload:
                daemon.send_signal(signal.SIGHUP)
                reloads += 1
                next_reload += args.reload_every
            time.sleep(max(0.0, 0.1 - (time.time() - t0)))
        stop.set()
        for t in threads:
            t.join()
        load_summary = ""
        if wrk:
            out, _ = wrk.communicate(timeout=args.seconds + 30)
            m = re.search(r"Requests/sec:\s*(\S+)", out)
            n = re.search(r"(\d+) requests in", out)
            load_summary = (f"{n.group(1) if n else '?'} requests, {m.group(1) if m else '?'}/s, "
                            f"{counts['hostile']} hostile connections")
        else:
            load_summary = (f"{counts['requests']} requests, {counts['errors']} client errors, "
                            f"{counts['hostile']} hostile connections")
        # Connections close; the daemon settles.
        time.sleep(3)
        rss_end, fds_end = rss_kb(daemon.pid), fd_count(daemon.pid)
        if fds_end != fds_start:
            failures.append(f"open descriptors did not return: {fds_start} -> {fds_end}")
        if rss_end > rss_start + args.rss_tolerance_kb:
            failures.append(f"RSS did not return: {rss_start} kB -> {rss_end} kB "
                            f"(tolerance {args.rss_tolerance_kb} kB)")
        if daemon.poll() is not None:
            failures.append(f"the daemon exited with {daemon.returncode}")

        print(f"soak: {args.seconds} s, load: {load}: {load_summary}")
        print(f"soak: checker: {scrapes} scrapes every 100 ms, {checker_failures} failed, "
              f"{len(last)} counter series, {decreases} decreases, {reloads} reloads (SIGHUP)")
        print(f"soak: RSS start {rss_start} kB, peak {rss_peak} kB, end {rss_end} kB")
        print(f"soak: fds start {fds_start}, peak {fds_peak}, end {fds_end}")
        for f in failures:
            print("soak: FAIL:", f)
        print("soak:", "FAILED" if failures else "OK")
        return 1 if failures else 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
