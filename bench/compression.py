#!/usr/bin/env python3
"""Compression on the 100k-pod body: bytes on the wire per coding, and the poll time.

A threaded HTTP server on 127.0.0.1 serves the energy body (15.8 MB) pre-compressed in each
coding (gzip and deflate level 6, br quality 5, zstd level 3); the release daemon polls one
source at a time every second, and each poll's duration is read from
jsonbridge_source_last_poll_duration_seconds (9 polls per coding and round, 2 rounds,
alternating codings; median). Loopback only, bounded.

    pip install zstandard brotli
    cargo build --release && python3 bench/compression.py [BINARY]
"""
import gzip, zlib, subprocess, sys, time, os, statistics, threading, http.server, socket, urllib.request, re, tempfile
import zstandard, brotli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "jsonbridge")
GEN = os.path.join(os.path.dirname(ROOT), "shared", "bench", "gen_energy.py")
body = subprocess.run([sys.executable, GEN, "--apps", "20", "--namespaces", "10", "--pods", "500"], capture_output=True, check=True).stdout
enc = {
    "identity": body,
    "gzip": gzip.compress(body, 6),
    "deflate": zlib.compress(body, 6),
    "br": brotli.compress(body, quality=5),
    "zstd": zstandard.ZstdCompressor(level=3).compress(body),
}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = self.path.strip("/")
        data = enc[c]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if c != "identity":
            self.send_header("Content-Encoding", c)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); web = s.getsockname()[1]; s.close()
def run(only):
  d = tempfile.mkdtemp()
  cfg = os.path.join(d, "c.yaml")
  with open(cfg, "w") as f:
    f.write("sources:\n")
    for c in [only]:
        f.write(f"  - name: {c}\n    url: http://127.0.0.1:{port}/{c}\n    every: 1s\n    max_series: 10000000\n    metrics:\n      - name: e_{c}\n        help: E.\n        each: \"$.apps.{{app}}.{{ns}}[*]\"\n        labels: {{pod: \"{{@.name}}\"}}\n        value: \"@.energy_consumed[-1]\"\n")
  p = subprocess.Popen([BIN, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{web}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  durs = []
  last = None
  try:
    deadline = time.time() + 60
    while time.time() < deadline and len(durs) < 9:
        time.sleep(0.2)
        try:
            m = urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics").read().decode()
        except Exception:
            continue
        c = only
        t = re.search(r'jsonbridge_source_last_success_timestamp_seconds\{source="%s"\} (\S+)' % c, m)
        dd = re.search(r'jsonbridge_source_last_poll_duration_seconds\{source="%s"\} (\S+)' % c, m)
        if t and dd and float(t.group(1)) > 0 and t.group(1) != last:
            last = t.group(1); durs.append(float(dd.group(1)) * 1000)
  finally:
    p.terminate(); p.wait()
  return durs
durs = {}
for rnd in range(2):
    for c in enc:
        durs.setdefault(c, []).extend(run(c))
print(f"| coding | bytes on the wire | of identity | poll median (ms), {min(len(v) for v in durs.values())} polls in 2 rounds, one source at a time |")
print("|---|---|---|---|")
for c in enc:
    print(f"| {c} | {len(enc[c])/1e6:.2f} MB | {len(enc[c])/len(body)*100:.1f}% | {statistics.median(durs[c]):.1f} |")
