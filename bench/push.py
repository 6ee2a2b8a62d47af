#!/usr/bin/env python3
"""Pushing against being scraped: the 100k-pod workload, side by side.

Push: jsonbridge (`--mode push`) polls the energy API (served from loopback) every 10 s and
pushes each poll's 100,000 series into a VictoriaMetrics on loopback (Debian's
`victoria-metrics`). Scrape: the same jsonbridge config (`--mode serve`), scraped by a
Prometheus on loopback (Debian's `prometheus`) every 10 s. For each: jsonbridge's CPU (share
of one core over the run) and peak RSS; for the push, samples per second while sending
(100,000 samples over the time the queue took to drain) and bytes on the wire per sample
(`jsonbridge_remote_write_sent_bytes_total`); for the scrape, the bytes per sample of a
scrape as Prometheus asks for it (gzip). Everything talks to 127.0.0.1 only; every loop is
bounded.

    python3 bench/push.py                      # 6 polls each (about 3 minutes)
    python3 bench/push.py --polls 12 --binary /tmp/jsonbridge
"""

import argparse
import gzip
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the workload, its server and the process helpers)

EVERY = 10


def metrics(port, path="/metrics", gz=False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if gz:
        req.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def value(body, series):
    m = re.search("^" + re.escape(series) + r" (\S+)", body, re.M)
    return float(m.group(1)) if m else None


def config(data_port, extra=""):
    return run.config_text(data_port, "energy100k", f"{EVERY}s") + extra


def start(binary, cfg_text, mode, work):
    cfg = os.path.join(work, f"{mode}.yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    port = run.free_port()
    p = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                          "--config.no-watch", "--log.level", "warn", "--mode", mode],
                         stderr=subprocess.DEVNULL)
    run.wait_http(port, "/-/healthy")
    return p, port


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()


def push_case(binary, data_port, polls, work):
    vm_port = run.free_port()
    vm = subprocess.Popen(["victoria-metrics", f"-storageDataPath={os.path.join(work, 'vm')}",
                           f"-httpListenAddr=127.0.0.1:{vm_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run.wait_http(vm_port, "/health")
        text = config(data_port, f"remote_write:\n  - url: http://127.0.0.1:{vm_port}/api/v1/write\n    name: vm\n")
        p, port = start(binary, text, "push", work)
        cpu0, t0 = run.cpu_seconds(p.pid), time.time()
        drains = []
        sent_before = 0.0
        deadline = time.time() + polls * EVERY + 60
        # Watch the queue: from the moment a poll's samples arrive until it is empty again.
        while len(drains) < polls and time.time() < deadline:
            body = metrics(port).decode()
            q = value(body, 'jsonbridge_remote_write_queue_samples{endpoint="vm"}') or 0
            if q > 0:
                began = time.perf_counter()
                while (value(metrics(port).decode(), 'jsonbridge_remote_write_queue_samples{endpoint="vm"}') or 0) > 0:
                    time.sleep(0.005)
                sent = value(metrics(port).decode(), 'jsonbridge_remote_write_samples_total{endpoint="vm",result="sent"}') or 0
                drains.append((time.perf_counter() - began, sent - sent_before))
                sent_before = sent
            time.sleep(0.005)
        body = metrics(port).decode()
        cpu = (run.cpu_seconds(p.pid) - cpu0) / (time.time() - t0)
        peak = run.status_mib(p.pid, "VmHWM")
        sent = value(body, 'jsonbridge_remote_write_samples_total{endpoint="vm",result="sent"}')
        bytes_sent = value(body, 'jsonbridge_remote_write_sent_bytes_total{endpoint="vm"}')
        failed = value(body, 'jsonbridge_remote_write_samples_total{endpoint="vm",result="failed"}')
        stop(p)
        # What VictoriaMetrics holds: the series of one poll.
        urllib.request.urlopen(f"http://127.0.0.1:{vm_port}/internal/force_flush", timeout=30).read()
        count = urllib.request.urlopen(
            f"http://127.0.0.1:{vm_port}/api/v1/query?query=count(energy_consumed)&nocache=1", timeout=60).read().decode()
        return {
            "rate": statistics.median(n / t for t, n in drains if t > 0 and n > 0) if drains else None,
            "drain": statistics.median(t for t, _ in drains) if drains else None,
            "bytes_per_sample": bytes_sent / sent if sent else None,
            "cpu": cpu, "peak": peak, "sent": sent, "failed": failed,
            "vm_series": re.search(r'"value":\[[^,]+,"(\d+)"', count).group(1) if '"value"' in count else "?",
        }
    finally:
        vm.kill()
        vm.wait()


def scrape_case(binary, data_port, polls, work):
    p, port = start(binary, config(data_port), "serve", work)
    prom_port = run.free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write(f"global: {{scrape_interval: {EVERY}s, scrape_timeout: {EVERY}s}}\n"
                f"scrape_configs:\n  - job_name: jsonbridge\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={os.path.join(work, 'prometheus.yml')}",
                             f"--storage.tsdb.path={os.path.join(work, 'prom')}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cpu0, t0 = run.cpu_seconds(p.pid), time.time()
        time.sleep(polls * EVERY)
        cpu = (run.cpu_seconds(p.pid) - cpu0) / (time.time() - t0)
        peak = run.status_mib(p.pid, "VmHWM")
        gz = metrics(port, gz=True)
        plain = gzip.decompress(gz) if gz[:2] == b"\x1f\x8b" else gz
        series = sum(1 for line in plain.decode().splitlines() if line.startswith("energy_consumed{"))
        return {"cpu": cpu, "peak": peak, "bytes_per_sample": len(gz) / series if series else None}
    finally:
        prom.kill()
        prom.wait()
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polls", type=int, default=6)
    ap.add_argument("--binary")
    a = ap.parse_args()
    if a.binary:
        binary = os.path.abspath(a.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=run.ROOT, check=True)
        binary = os.path.join(run.ROOT, "target", "release", "jsonbridge")
    os.makedirs(run.OUT, exist_ok=True)
    path = os.path.join(run.OUT, "energy100k.json")
    if not os.path.exists(path):
        apps, nss, pods = run.SIZES["100k"]
        with open(path, "w") as f:
            subprocess.run([sys.executable, os.path.join(run.SHARED, "gen_energy.py"), "--apps", str(apps),
                            "--namespaces", str(nss), "--pods", str(pods)], stdout=f, check=True)
    httpd, data_port = run.serve_dir(run.OUT)
    work = tempfile.mkdtemp()
    try:
        push = push_case(binary, data_port, a.polls, work)
        scrape = scrape_case(binary, data_port, a.polls, work)
    finally:
        httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; 100,000 series per poll, a poll every {EVERY} s, "
          f"{a.polls} polls each\n")
    print("| | push to VictoriaMetrics | scraped by Prometheus |")
    print("|---|---|---|")
    print(f"| samples per second while sending (median per poll) | {push['rate']:,.0f} (a poll's queue drained in {push['drain'] * 1000:.0f} ms) | - |")
    print(f"| bytes on the wire per sample | {push['bytes_per_sample']:.2f} (snappy protobuf) | {scrape['bytes_per_sample']:.2f} (gzip text) |")
    print(f"| jsonbridge CPU (one core = 100%) | {push['cpu'] * 100:.1f}% | {scrape['cpu'] * 100:.1f}% |")
    print(f"| jsonbridge peak RSS | {push['peak']:.0f} MB | {scrape['peak']:.0f} MB |")
    print(f"\nPushed: {push['sent']:.0f} samples sent, {push['failed']:.0f} failed; VictoriaMetrics counts "
          f"{push['vm_series']} series.")


if __name__ == "__main__":
    main()
