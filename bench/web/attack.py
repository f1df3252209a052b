#!/usr/bin/env python3
"""Attack harness for the /metrics endpoint (issue 11, items 2 and 3).

Starts the real daemon on loopback with a temporary configuration (and a
throw-away TLS certificate made with the openssl command), attacks it, and
meanwhile scrapes it from another loopback address in a loop, recording the
scraper's success rate and latency percentiles:

  slowloris   N connections trickling a request head at 1 byte/s each,
              reconnecting whenever the server closes them;
  tls-half    N connections trickling a TLS ClientHello at 1 byte/s each
              (half-open handshakes), reconnecting likewise;
  auth-flood  32 keep-alive clients sending requests with a fresh wrong
              password each, as fast as they are answered (from one address,
              and from 32 addresses with a failure limit each).

Each scrape opens a new connection (and, over TLS, a new handshake): the
worst case for a scraper. Success = status 200 with the whole body within
the scrape timeout. Writes a Markdown report (--out).

Usage: attack.py --daemon build/daemon/pmu-exporter [--before OLD_BINARY]
                 [--duration 20] [--out bench/results/web-attack.md]
"""

import argparse
import base64
import heapq
import http.client
import multiprocessing
import os
import random
import resource
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ATTACKER_ADDRESS = "127.0.0.1"
SCRAPER_ADDRESS = "127.0.0.2"  # another client to the per-address limits
SCRAPE_TIMEOUT = 2.0
SCRAPE_PAUSE = 0.05
USER, PASSWORD = "prometheus", "correct horse battery staple"


def recv_or_eof(sock, size):
    """Bytes read, b"" when the peer closed or the socket failed, None when
    nothing is there yet."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_tls(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def password_hash(daemon):
    out = subprocess.run([daemon, "--hash-password"], input=PASSWORD + "\n", check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


class Daemon:
    """The exporter on 127.0.0.1:<free port> with a temporary config."""

    def __init__(self, binary, tmp, name, tls=None, users_hash=None, max_connections=512,
                 nofile=8192):
        self.port_file = os.path.join(tmp, name + ".port")
        config = os.path.join(tmp, name + ".toml")
        lines = [
            "[exporter]", 'listen = "127.0.0.1:0"', f'port_file = "{self.port_file}"',
            "[sampling]", 'interval = "1s"',
            "[log]", 'target = "stderr"', 'level = "warn"',
            "[web]", f"max_connections = {max_connections}",
        ]
        if tls:
            lines += [f'tls_cert_file = "{tls[0]}"', f'tls_key_file = "{tls[1]}"']
        if users_hash:
            lines += ["[[web.users]]", f'name = "{USER}"', f'password_hash = "{users_hash}"']
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(tmp, name + ".log"), "w+")
        if os.path.exists(self.port_file):
            os.remove(self.port_file)  # a stale port from an earlier run

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen([binary, "--config", config], stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=limits)
        deadline = time.time() + 20
        self.port = None
        while time.time() < deadline and self.proc.poll() is None:
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"daemon did not start: {self.log.read()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def client_hello():
    """The bytes of a real TLS ClientHello (the first flight of a handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# --------------------------------------------------------------------------
# Attackers (each runs in its own process until told to stop)

def slow_attack(port, count, payload, stop, ready, stats):
    """`count` connections each sending one byte of `payload` per second,
    reconnecting (at its next tick) when the server closes it."""
    raise_fd_limit()
    sel = selectors.DefaultSelector()
    conns = {}  # slot -> (socket, offset)
    timers = []  # (when, slot)
    now = time.monotonic()
    for slot in range(count):
        # Connections opened over the first 2 s, then one byte a second each.
        heapq.heappush(timers, (now + 2.0 * slot / count, slot))
    opened = closed_by_server = 0
    ready_set = False
    while not stop.is_set():
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, slot = heapq.heappop(timers)
            entry = conns.get(slot)
            if entry is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.bind((ATTACKER_ADDRESS, 0))
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    heapq.heappush(timers, (now + 1.0, slot))
                    continue
                conns[slot] = (s, 0)
                sel.register(s, selectors.EVENT_READ, slot)
                opened += 1
            else:
                s, offset = entry
                try:
                    s.send(payload[offset % len(payload):offset % len(payload) + 1])
                    conns[slot] = (s, offset + 1)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    sel.unregister(s)
                    s.close()
                    del conns[slot]
                    closed_by_server += 1
            heapq.heappush(timers, (now + 1.0, slot))
        if not ready_set and opened >= count:
            ready.set()
            ready_set = True
        timeout = max(0.0, min(0.05, timers[0][0] - time.monotonic())) if timers else 0.05
        for key, _ in sel.select(timeout):
            slot = key.data
            s, _ = conns[slot]
            data = recv_or_eof(s, 4096)
            if data is None:
                continue
            if not data:
                sel.unregister(s)
                s.close()
                del conns[slot]
                closed_by_server += 1
    stats["opened"] = opened
    stats["closed_by_server"] = closed_by_server
    stats["open_at_end"] = len(conns)


def auth_flood(port, count, spread, stop, ready, stats):
    """`count` keep-alive clients, each sending a request with a new wrong
    password as soon as the previous answer is in; with `spread`, each from
    its own loopback address (127.0.1.N), so each has its own failure limit."""
    sel = selectors.DefaultSelector()
    statuses = {}
    rng = random.Random(1)

    def request():
        guess = "guess-%016x" % rng.getrandbits(64)
        token = base64.b64encode(f"{USER}:{guess}".encode()).decode()
        return (f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n"
                ).encode()

    def connect(slot):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.1.{slot + 1}" if spread else ATTACKER_ADDRESS, 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        s.sendall(request())
        sel.register(s, selectors.EVENT_READ, (slot, bytearray()))
        return s

    for slot in range(count):
        connect(slot)
    ready.set()
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            s, (slot, buf) = key.fileobj, key.data
            data = recv_or_eof(s, 65536)
            if data is None:
                continue
            if not data:
                sel.unregister(s)
                s.close()
                statuses["reconnects"] = statuses.get("reconnects", 0) + 1
                connect(slot)
                continue
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = bytes(buf[:end]).decode(errors="replace").split("\r\n")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(buf) < end + 4 + length:
                    break
                status = head[0].split(" ")[1]
                statuses[status] = statuses.get(status, 0) + 1
                del buf[:end + 4 + length]
                try:
                    s.send(request())
                except OSError:
                    pass
    stats.update(statuses)


# --------------------------------------------------------------------------
# The scraper

def scrape_loop(port, tls_ca, auth, duration, result):
    latencies, failures, errors = [], 0, {}
    ctx = None
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{USER}:{PASSWORD}".encode()).decode()
    end = time.monotonic() + duration
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            if ctx:
                conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT,
                                                   context=ctx,
                                                   source_address=(SCRAPER_ADDRESS, 0))
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT,
                                                  source_address=(SCRAPER_ADDRESS, 0))
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            elapsed = time.monotonic() - start
            if response.status == 200 and body and elapsed <= SCRAPE_TIMEOUT:
                latencies.append(elapsed)
            else:
                failures += 1
                key = f"status {response.status}"
                errors[key] = errors.get(key, 0) + 1
        except Exception as e:  # noqa: BLE001 - every failure counts
            failures += 1
            key = type(e).__name__
            errors[key] = errors.get(key, 0) + 1
        time.sleep(SCRAPE_PAUSE)
    result["latencies"] = latencies
    result["failures"] = failures
    result["errors"] = errors


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def run_scenario(binary, tmp, name, kind, attackers, duration, tls, users_hash, max_connections):
    auth = kind.startswith("auth-flood")
    daemon = Daemon(binary, tmp, f"{name}-{len(os.listdir(tmp))}",
                    tls=tls if kind == "tls-half" else None,
                    users_hash=users_hash if auth else None,
                    max_connections=max_connections)
    manager = multiprocessing.Manager()
    attack_stats, scrape = manager.dict(), manager.dict()
    stop, ready = multiprocessing.Event(), multiprocessing.Event()
    try:
        if kind == "slowloris":
            payload = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: loris\r\n" * 1000
            attacker = multiprocessing.Process(
                target=slow_attack, args=(daemon.port, attackers, payload, stop, ready,
                                          attack_stats))
        elif kind == "tls-half":
            attacker = multiprocessing.Process(
                target=slow_attack, args=(daemon.port, attackers, client_hello(), stop, ready,
                                          attack_stats))
        else:
            attacker = multiprocessing.Process(
                target=auth_flood, args=(daemon.port, attackers, kind == "auth-flood-spread", stop,
                                         ready, attack_stats))
        attacker.start()
        ready.wait(30)
        time.sleep(3)  # let the attack reach its steady state
        scraper = multiprocessing.Process(
            target=scrape_loop, args=(daemon.port, tls[0] if kind == "tls-half" else None,
                                      auth, duration, scrape))
        scraper.start()
        scraper.join(duration + 60)
        stop.set()
        attacker.join(30)
        if attacker.is_alive():
            attacker.kill()
        alive = daemon.proc.poll() is None
    finally:
        daemon.stop()
    latencies = list(scrape.get("latencies", []))
    failures = scrape.get("failures", 0)
    total = len(latencies) + failures
    row = {
        "scenario": name, "kind": kind, "attackers": attackers, "cap": max_connections,
        "scrapes": total, "ok": len(latencies),
        "success": 100.0 * len(latencies) / total if total else 0.0,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies) if latencies else float("nan"),
        "errors": dict(scrape.get("errors", {})),
        "attack": dict(attack_stats), "daemon_alive": alive,
    }
    manager.shutdown()
    return row


SCENARIOS = [
    # name, kind, attackers, max_connections
    ("slowloris-512", "slowloris", 512, 512),
    ("slowloris-1000", "slowloris", 1000, 512),
    ("slowloris-1000-cap1024", "slowloris", 1000, 1024),
    ("tls-half-open-512", "tls-half", 512, 512),
    ("tls-half-open-1000", "tls-half", 1000, 512),
    ("auth-flood-32", "auth-flood", 32, 512),
    ("auth-flood-32-addresses", "auth-flood-spread", 32, 512),
]


def format_rows(label, rows):
    out = [f"### {label}", "",
           "| scenario | attackers | cap | scrapes | success | p50 ms | p99 ms | max ms | "
           "scraper errors | attack side |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "—"
        attack = ", ".join(f"{k} {v}" for k, v in sorted(r["attack"].items())) or "—"
        if not r["daemon_alive"]:
            attack += " (DAEMON DIED)"
        out.append(f"| {r['scenario']} | {r['attackers']} | {r['cap']} | {r['scrapes']} | "
                   f"{r['success']:.1f}% | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                   f"{r['max_ms']:.2f} | {errors} | {attack} |")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", required=True, help="pmu-exporter binary to attack")
    parser.add_argument("--before", help="an older binary to attack the same way, for comparison")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of scraping each")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--out", default="bench/results/web-attack.md")
    args = parser.parse_args()
    raise_fd_limit()
    probe = socket.socket()
    try:
        probe.bind((SCRAPER_ADDRESS, 0))
    except OSError:
        print(f"cannot bind {SCRAPER_ADDRESS}: the scraper needs a second loopback address",
              file=sys.stderr)
        return 77
    finally:
        probe.close()
    scenarios = SCENARIOS
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in SCENARIOS if s[0] in wanted]
    binaries = [("after (this tree)", args.daemon)]
    if args.before:
        binaries.insert(0, ("before (--before binary)", args.before))
    sections = []
    with tempfile.TemporaryDirectory(prefix="pmu-web-attack-") as tmp:
        tls = make_tls(tmp)
        for label, binary in binaries:
            users_hash = password_hash(binary)
            rows = []
            for name, kind, attackers, cap in scenarios:
                print(f"[{label}] {name} ...", flush=True)
                row = run_scenario(binary, tmp, name, kind, attackers, args.duration, tls,
                                   users_hash, cap)
                row["scenario"] = name
                print(f"  scrapes {row['scrapes']} success {row['success']:.1f}% "
                      f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms "
                      f"errors {row['errors']} attack {row['attack']}", flush=True)
                rows.append(row)
            sections += format_rows(label, rows) + [""]
    header = [
        "# /metrics under attack (bench/web/attack.py, `make bench-web`)", "",
        f"Host: {os.uname().nodename}, {os.cpu_count()} CPUs, kernel {os.uname().release}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Each scenario: the daemon on 127.0.0.1 (defaults: request_timeout 10 s, "
        f"max_connections as in the cap column, RLIMIT_NOFILE 8192), attackers from "
        f"{ATTACKER_ADDRESS}, a scraper from {SCRAPER_ADDRESS} opening a new connection "
        f"per scrape (new TLS handshake in the TLS case) every {SCRAPE_PAUSE * 1000:.0f} ms "
        f"for {args.duration:.0f} s; success = 200 with the whole body within "
        f"{SCRAPE_TIMEOUT:.0f} s; latency percentiles over successful scrapes.",
        "Slow attackers send 1 byte/s per connection and reconnect (at their next tick) "
        "when closed; tls-half trickles a real ClientHello. auth-flood: 32 keep-alive "
        "clients, a fresh wrong password per request, as fast as answered; the scraper "
        "sends the right one. auth-flood-32-addresses: the same from 32 addresses "
        "(127.0.1.1-32), each with its own failure limit, so the hashing workers stay busy "
        "with distinct wrong passwords.",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(header + sections) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
