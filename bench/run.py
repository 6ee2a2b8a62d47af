#!/usr/bin/env python3
"""Side-by-side benchmark: jsonbridge against the Python exporter it replaces.

Builds jsonbridge (release), generates the energy workloads with ../shared/bench/gen_energy.py,
serves them from loopback, runs both exporters on the same data in the same run, and prints
a table with medians, p99s and ratios. Polls are taken in rounds that alternate the two
exporters (`--rounds`, `--warmup`). Everything talks to 127.0.0.1 only, every loop is
bounded.

    python3 bench/run.py                 # 1k and 100k pods (about 4 minutes)
    python3 bench/run.py --sizes 1k,100k,1m
    python3 bench/run.py --no-baseline   # jsonbridge only

The baseline needs `pip install prometheus_client requests`.
"""
import argparse
import gzip
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
OUT = os.path.join(ROOT, "bench", "out")
SIZES = {"1k": (2, 5, 100), "100k": (20, 10, 500), "1m": (40, 25, 1000)}  # apps, namespaces, pods


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def status_mib(pid, field):
    """A memory field of /proc/PID/status (VmRSS, VmHWM...) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakSampler(threading.Thread):
    """Samples a process's RSS every 10 ms; VmHWM alone cannot be reset between phases."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.01)


def get(port, path="/metrics", gz=False, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Accept-Encoding": "gzip"} if gz else {}
    t = time.perf_counter()
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    c.close()
    return r.status, body, dt, r.getheader("Content-Encoding")


def scrape_latencies(port, n, gz=False):
    times = []
    for _ in range(n):
        status, body, dt, enc = get(port, gz=gz)
        assert status == 200, status
        times.append(dt)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], len(body), enc


def throughput(port, seconds=5, workers=8):
    """Scrapes per second with `workers` concurrent clients, for `seconds`."""
    stop = time.perf_counter() + seconds
    count = [0] * workers

    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop:
            c.request("GET", "/metrics")
            r = c.getresponse()
            r.read()
            count[i] += 1
        c.close()

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(worker, range(workers)))
    return sum(count) / seconds


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        # A real API's data changes between polls: answer every poll in full, never 304
        # (jsonbridge asks with If-Modified-Since, which this server would honour).
        del self.headers["If-Modified-Since"]
        del self.headers["If-None-Match"]
        super().do_GET()


def serve_dir(directory):
    port = free_port()
    handler = lambda *a, **k: QuietHandler(*a, directory=directory, **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, port


def wait_http(port, path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status, body, _, _ = get(port, path, timeout=5)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"nothing answered on :{port}{path}")


def poll_times_jsonbridge(binary, data_port, name, n, every):
    """(duration, of which fetching) of the first `n` polls, from jsonbridge's debug log
    (whole milliseconds)."""
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "jsonbridge.yaml")
    with open(cfg, "w") as f:
        f.write(config_text(data_port, name, every))
    p = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{free_port()}",
                          "--config.no-watch", "--log.level", "debug"], stderr=subprocess.PIPE, text=True)
    times = []
    try:
        for line in p.stderr:
            if "poll failed" in line:
                raise SystemExit("jsonbridge's poll failed:\n" + line)
            if "poll succeeded" in line and "source=energy" in line:
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                times.append((int(fields["duration_ms"]) / 1000, int(fields["fetch_ms"]) / 1000))
                if len(times) == n:
                    break
        return times
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def run_polls(binary, config, polls):
    """Runs `binary` on the config text until `polls` polls succeeded: their (duration,
    fetch) in ms from the debug log, the peak RSS in MiB, and /metrics then."""
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "jsonbridge.yaml")
    with open(cfg, "w") as f:
        f.write(config)
    web = free_port()
    p = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{web}",
                          "--config.no-watch", "--log.level", "debug"],
                         stderr=subprocess.PIPE, text=True)
    times = []
    try:
        for line in p.stderr:
            if "poll failed" in line:
                raise SystemExit("the poll failed:\n" + line)
            if "poll succeeded" in line:
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                times.append((int(fields["duration_ms"]), int(fields["fetch_ms"])))
                if len(times) == polls:
                    break
        peak = status_mib(p.pid, "VmHWM")
        _, body, _, _ = get(web, "/metrics")
        return times, peak, body.decode()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def poll_times_python(data_port, name, n, every):
    """Durations of the first `n` polls, from the baseline's own `poll` lines."""
    env = dict(os.environ, INTERVAL=str(every))
    p = subprocess.Popen([sys.executable, "-u", os.path.join(SHARED, "python_exporter.py"),
                          f"http://127.0.0.1:{data_port}/{name}.json", str(free_port())],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        return [float(p.stdout.readline().split()[1].rstrip("s")) for _ in range(n)]
    finally:
        p.kill()
        p.wait()


def config_text(data_port, name, every):
    return f"""sources:
  - name: energy
    url: http://127.0.0.1:{data_port}/{name}.json
    every: {every}
    timeout: 120s
    max_body_bytes: 1073741824
    max_series: 2000000
    metrics:
      - name: energy_consumed
        help: Energy consumed at the latest time point.
        each: "$.apps.*.{{namespace}}[*]"
        labels: {{pod_name: "{{@.name}}", namespace: "{{namespace}}"}}
        value: "@.energy_consumed[-1]"
"""


def jsonbridge_case(binary, data_port, name, scrapes):
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "jsonbridge.yaml")
    with open(cfg, "w") as f:
        f.write(config_text(data_port, name, "1h"))
    port = free_port()
    p = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                          "--config.no-watch", "--log.level", "warn"])
    sampler = PeakSampler(p.pid)
    sampler.start()
    try:
        wait_http(port, "/-/ready")
        body = wait_http(port, "/metrics").decode()
        if 'jsonbridge_source_up{source="energy"} 1' not in body:
            raise SystemExit("jsonbridge's poll failed:\n" + "\n".join(
                l for l in body.splitlines() if "polls_total" in l))
        poll = next(float(l.split()[-1]) for l in body.splitlines()
                    if l.startswith('jsonbridge_source_last_poll_duration_seconds{source="energy"}'))
        peak_poll = sampler.peak
        med, p99, size, _ = scrape_latencies(port, scrapes)
        gmed, gp99, gsize, enc = scrape_latencies(port, scrapes, gz=True)
        assert enc == "gzip"
        tput = throughput(port)
        time.sleep(1)
        steady = rss_kib(p.pid)
        return dict(poll=poll, med=med, p99=p99, gmed=gmed, gp99=gp99, size=size, gsize=gsize,
                    tput=tput, peak=max(sampler.peak, peak_poll), steady=steady)
    finally:
        sampler.stop.set()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def python_case(data_port, name, scrapes):
    port = free_port()
    env = dict(os.environ, INTERVAL="3600")
    p = subprocess.Popen([sys.executable, "-u", os.path.join(SHARED, "python_exporter.py"),
                          f"http://127.0.0.1:{data_port}/{name}.json", str(port)],
                         stdout=subprocess.PIPE, text=True, env=env)
    sampler = PeakSampler(p.pid)
    sampler.start()
    try:
        line = p.stdout.readline()  # "poll 1.234s"
        poll = float(line.split()[1].rstrip("s"))
        med, p99, size, _ = scrape_latencies(port, scrapes)
        tput = throughput(port)
        time.sleep(1)
        steady = rss_kib(p.pid)
        return dict(poll=poll, med=med, p99=p99, gmed=None, gp99=None, size=size, gsize=None,
                    tput=tput, peak=sampler.peak, steady=steady)
    finally:
        sampler.stop.set()
        p.kill()
        p.wait()


def idle(binary):
    port = free_port()
    p = subprocess.Popen([binary, "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
                         cwd=ROOT)
    try:
        wait_http(port, "/-/ready")
        time.sleep(1)
        c0 = cpu_seconds(p.pid)
        time.sleep(10)
        return (cpu_seconds(p.pid) - c0) / 10 * 100, rss_kib(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def fmt_ms(s):
    return "-" if s is None else f"{s * 1000:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1k,100k")
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--polls", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="polls are taken in this many rounds, alternating the two exporters")
    ap.add_argument("--warmup", type=int, default=1,
                    help="polls each round's new process makes before the measured ones")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--binary", help="measure this jsonbridge build instead of building the tree's "
                    "(to compare two builds in one sitting)")
    a = ap.parse_args()
    if a.binary:
        binary = os.path.abspath(a.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "jsonbridge")
    os.makedirs(OUT, exist_ok=True)
    for size in a.sizes.split(","):
        apps, nss, pods = SIZES[size]
        path = os.path.join(OUT, f"energy{size}.json")
        if not os.path.exists(path):
            with open(path, "w") as f:
                subprocess.run([sys.executable, os.path.join(SHARED, "gen_energy.py"), "--apps", str(apps),
                                "--namespaces", str(nss), "--pods", str(pods)], stdout=f, check=True)
    httpd, data_port = serve_dir(OUT)
    rows = []
    for size in a.sizes.split(","):
        name = f"energy{size}"
        mb = os.path.getsize(os.path.join(OUT, name + ".json")) / 1e6
        jb = jsonbridge_case(binary, data_port, name, a.scrapes)
        py = None if a.no_baseline else python_case(data_port, name, a.scrapes)
        # Polls: separate processes that poll every few seconds, in rounds that alternate
        # the two exporters, so that both meet the same phases of a noisy machine; each
        # round's first `--warmup` polls (connections, the baseline creating its gauges) are
        # not counted. The median of `--polls` polls.
        every = {"1k": 1, "100k": 2, "1m": 10}[size]
        jb_polls, py_polls = [], []
        for r in range(a.rounds):
            n = len(range(r, a.polls, a.rounds))
            if n == 0:
                continue
            jb_polls += poll_times_jsonbridge(binary, data_port, name, n + a.warmup, f"{every}s")[a.warmup:]
            if py:
                py_polls += poll_times_python(data_port, name, n + a.warmup, every)[a.warmup:]
        jb["poll"] = statistics.median(t for t, _ in jb_polls)
        jb["fetch"] = statistics.median(f for _, f in jb_polls)
        if py:
            py["poll"] = statistics.median(py_polls)
        rows.append((size, mb, jb, py))
    httpd.shutdown()
    idle_cpu, idle_rss = idle(binary)
    print(f"\nMachine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; release build "
          f"{os.path.getsize(binary) / 1e6:.1f} MB\n")
    print("| pods | JSON | metric | jsonbridge | Python exporter | ratio |")
    print("|---|---|---|---|---|---|")
    for size, mb, jb, py in rows:
        def row(label, key, fmt, better="lower"):
            j = jb[key]
            p = py.get(key) if py else None
            if p is None or j in (None, 0):
                ratio = "-"
            else:
                ratio = f"{(p / j) if better == 'lower' else (j / p):.1f}x"
            print(f"| {size} | {mb:.1f} MB | {label} | {fmt(j)} | {fmt(p) if p is not None else '-'} | {ratio} |")
        row(f"poll (fetch+parse+extract+swap), median of {a.polls} in {a.rounds} rounds", "poll",
            lambda v: f"{v * 1000:.1f} ms")
        row("poll: of which fetching the body, median", "fetch", lambda v: f"{v * 1000:.1f} ms")
        row("/metrics median", "med", fmt_ms)
        row("/metrics p99", "p99", fmt_ms)
        row("/metrics gzip median", "gmed", fmt_ms)
        row("/metrics size", "size", lambda v: f"{v / 1e6:.2f} MB")
        row("/metrics gzip size", "gsize", lambda v: f"{v / 1e6:.2f} MB")
        row("scrapes/s, 8 clients", "tput", lambda v: f"{v:.0f}", better="higher")
        row("peak RSS", "peak", lambda v: f"{v / 1024:.0f} MB")
        row("steady RSS", "steady", lambda v: f"{v / 1024:.0f} MB")
    print(f"\nIdle, default config: {idle_cpu:.2f}% CPU, {idle_rss / 1024:.1f} MB RSS")


if __name__ == "__main__":
    main()
