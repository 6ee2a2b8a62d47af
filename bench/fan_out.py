#!/usr/bin/env python3
"""Fan-out's cost: a list of `--children` clusters (default 500), then one request each, at
several concurrencies (`--concurrency 1,8,32`).

A threaded Python server on loopback answers the list at once and each cluster's stats after
`--latency-ms` (default 5 ms, an internal API's usual), so concurrency shows. For each
concurrency the release build polls `--polls` times (every 5 s): the polls' median duration
and fetch time (from the daemon's debug log), peak RSS, and the series served.

    python3 bench/fan_out.py
    python3 bench/fan_out.py --children 500 --concurrency 1,8,32 --binary B
"""

import argparse
import http.server
import json
import os
import re
import socketserver
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, run_polls  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve(children, latency):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/clusters":
                body = json.dumps({"clusters": [{"id": f"c{i:04d}", "name": f"Cluster {i}"}
                                                for i in range(children)]})
            else:
                time.sleep(latency)
                n = int(self.path.split("/")[2][1:])
                body = json.dumps({"cpu": n * 0.01, "memory_bytes": n * 1024,
                                   "nodes": [{"up": True}, {"up": n % 7 != 0}]})
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        request_queue_size = 256

    port = free_port()
    httpd = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, port


def config(port, concurrency):
    return f"""sources:
  - name: fleet
    url: http://127.0.0.1:{port}/clusters
    every: 5s
    timeout: 60s
    fan_out:
      each: "$.clusters[*]"
      url: "http://127.0.0.1:{port}/clusters/{{@.id}}/stats"
      labels: {{cluster: "{{@.name}}"}}
      concurrency: {concurrency}
    metrics:
      - name: cluster_cpu
        help: CPU.
        value: $.cpu
      - name: cluster_nodes_up
        help: Nodes up.
        each: "$.nodes[?@.up == true]"
        aggregate: count
"""


def measure(binary, port, concurrency, polls):
    times, peak, text = run_polls(binary, config(port, concurrency), polls)
    series = re.search(r'^jsonbridge_source_series\{source="fleet"\} (\S+)', text, re.M)
    return {"poll_ms": statistics.median(t for t, _ in times),
            "fetch_ms": statistics.median(f for _, f in times),
            "peak_mb": round(peak, 1),
            "series": float(series.group(1)) if series else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=500)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--latency-ms", type=float, default=5)
    ap.add_argument("--polls", type=int, default=5)
    ap.add_argument("--binary")
    a = ap.parse_args()
    binary = a.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "jsonbridge")
    httpd, port = serve(a.children, a.latency_ms / 1000)
    try:
        print(f"{a.children} children, {a.latency_ms:g} ms each at the upstream "
              f"(median of {a.polls} polls)\n")
        print("| concurrency | poll, median | of which fetching | peak RSS | series |")
        print("|---|---|---|---|---|")
        for c in [int(x) for x in a.concurrency.split(",")]:
            r = measure(binary, port, c, a.polls)
            print(f"| {c} | {r['poll_ms']:g} ms | {r['fetch_ms']:g} ms | {r['peak_mb']:g} MB "
                  f"| {r['series']:g} |")
    finally:
        httpd.shutdown()


if __name__ == "__main__":
    main()
