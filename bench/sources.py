#!/usr/bin/env python3
"""How one jsonbridge scales in sources: N small `file://` sources polled `every: 10s`.

For each N, starts the release build on a config of N sources (one metric each, over the same
small file), lets it run `--seconds`, then reads its /metrics: polls per source (each should
poll once at start and once every 10 s), how many sources kept their schedule, CPU used (from
/proc, as a share of one core) and resident memory. Loopback only; every run is bounded.

    python3 bench/sources.py                       # 1k, 3k, 10k, 30k sources, 60 s each
    python3 bench/sources.py --sizes 1000,10000 --seconds 40 --binary /tmp/old-jsonbridge
"""

import argparse
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
from run import cpu_seconds, free_port, status_mib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY = 10


def run(binary, n, seconds):
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "data.json"), "w") as f:
        f.write('{"n": 1, "items": [{"id": "a", "v": 1.5}, {"id": "b", "v": 2.5}]}')
    with open(os.path.join(work, "jsonbridge.yaml"), "w") as f:
        f.write("sources:\n")
        for i in range(n):
            f.write(f"  - name: s{i}\n    url: file://data.json\n    every: {EVERY}s\n"
                    f"    metrics: [{{name: v_{i}, help: V., each: \"$.items[*]\", "
                    f"labels: {{id: \"{{@.id}}\"}}, value: \"@.v\"}}]\n")
    port = free_port()
    p = subprocess.Popen([binary, "--config.file", os.path.join(work, "jsonbridge.yaml"),
                          "--web.listen-address", f"127.0.0.1:{port}", "--config.no-watch",
                          "--log.level", "warn"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"{n} sources: jsonbridge did not start")
                time.sleep(0.1)
        started = time.time()
        cpu0 = cpu_seconds(p.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(p.pid) - cpu0
        elapsed = time.time() - started
        rss, peak = status_mib(p.pid, "VmRSS"), status_mib(p.pid, "VmHWM")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120).read().decode()
        polls = [float(v) for v in re.findall(
            r'^jsonbridge_source_polls_total\{source="s\d+",result="success"\} (\S+)', body, re.M)]
        overlaps = sum(float(v) for v in re.findall(
            r'^jsonbridge_source_poll_overlaps_total\{source="s\d+"\} (\S+)', body, re.M))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)
    # A source on schedule polled at start-up and every EVERY s of the run since (the run
    # began after start-up, so one tick of slack either way).
    expected = 1 + int(elapsed // EVERY)
    on_time = sum(1 for x in polls if x >= expected - 1)
    return {
        "n": n, "seconds": elapsed, "expected": expected,
        "median": statistics.median(polls) if polls else 0, "min": min(polls) if polls else 0,
        "on_time": on_time / n, "cpu": cpu / elapsed, "rss": rss, "peak": peak, "overlaps": overlaps, "reported": len(polls),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000,10000,30000")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--binary", help="a jsonbridge build (default: build this tree's release)")
    a = ap.parse_args()
    if a.binary:
        binary = os.path.abspath(a.binary)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "jsonbridge")
    print(f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; every: {EVERY}s; {a.seconds} s per size\n")
    print("| sources | polls per source (median, min; expected) | on schedule | CPU (one core = 100%) | RSS (peak) |")
    print("|---|---|---|---|---|")
    for n in [int(x) for x in a.sizes.split(",")]:
        r = run(binary, n, a.seconds)
        print(f"| {r['n']:,} | {r['median']:.0f}, {r['min']:.0f}; {r['expected']} | "
              f"{r['on_time'] * 100:.1f}% | {r['cpu'] * 100:.1f}% | {r['rss']:.0f} MB ({r['peak']:.0f} MB) |",
              flush=True)


if __name__ == "__main__":
    main()
