#!/usr/bin/env python3
"""Pagination's cost: the same items in one response against the same items in pages.

Writes N items (`--items`, default 100,000) as one JSON response and as pages of
`--page-size` (default 1,000, so 100 pages) whose bodies link the next by a relative URL
(`paginate: {next_url: $.links.next}`), serves both from loopback, and runs the release
build on each in turn (`--rounds` alternations, `--polls` polls each): the polls' median
duration (from the daemon's debug log), the peak resident memory, and the series served.

    python3 bench/pages.py
    python3 bench/pages.py --items 100000 --page-size 1000 --rounds 3 --polls 5 --binary B
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import run_polls, serve_dir, wait_http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def item(i):
    return {"name": f"pod-{i:06d}", "namespace": f"ns-{i % 50}", "v": round(i * 0.37, 2)}


def write_data(work, items, size):
    with open(os.path.join(work, "all.json"), "w") as f:
        json.dump({"items": [item(i) for i in range(items)], "links": {"next": None}}, f)
    pages = (items + size - 1) // size
    for p in range(1, pages + 1):
        nxt = f"/page-{p + 1}.json" if p < pages else None
        with open(os.path.join(work, f"page-{p}.json"), "w") as f:
            json.dump({"items": [item(i) for i in range((p - 1) * size, min(p * size, items))],
                       "links": {"next": nxt}}, f)
    return pages


def config(port, paged):
    url = f"http://127.0.0.1:{port}/" + ("page-1.json" if paged else "all.json")
    pag = "    paginate: {next_url: $.links.next, max_pages: 1000}\n" if paged else ""
    return f"""sources:
  - name: s
    url: {url}
    every: 2s
    timeout: 120s
{pag}    metrics:
      - name: pod_value
        help: A value per pod.
        each: "$.items[*]"
        labels: {{namespace: "{{@.namespace}}", pod: "{{@.name}}"}}
        value: "@.v"
"""


def measure(binary, port, paged, polls):
    times, peak, text = run_polls(binary, config(port, paged), polls)
    series = re.search(r'^jsonbridge_source_series\{source="s"\} (\S+)', text, re.M)
    pages = re.search(r'^jsonbridge_source_last_poll_pages\{source="s"\} (\S+)', text, re.M)
    return {"median_ms": statistics.median(t for t, _ in times),
            "fetch_ms": statistics.median(f for _, f in times),
            "peak_mb": round(peak, 1),
            "series": float(series.group(1)) if series else 0,
            "pages": float(pages.group(1)) if pages else 1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--polls", type=int, default=5)
    ap.add_argument("--binary")
    a = ap.parse_args()
    binary = a.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "jsonbridge")
    work = tempfile.mkdtemp()
    try:
        pages = write_data(work, a.items, a.page_size)
        httpd, port = serve_dir(work)
        wait_http(port, "/page-1.json")
        rows = {"one": [], "paged": []}
        for _ in range(a.rounds):
            for name, paged in (("one", False), ("paged", True)):
                rows[name].append(measure(binary, port, paged, a.polls))
        httpd.shutdown()
        print(f"{a.items} items: one response, or {pages} pages of {a.page_size} "
              f"({a.rounds} rounds alternating, median of {a.polls} polls each)\n")
        print("| | one response | pages |")
        print("|---|---|---|")
        for key, label in (("median_ms", "poll, median ms"),
                           ("fetch_ms", "of which fetching (all pages), median ms"),
                           ("peak_mb", "peak RSS, MB"),
                           ("series", "series served"), ("pages", "pages per poll")):
            cell = lambda n: ", ".join(f"{r[key]:g}" for r in rows[n])
            print(f"| {label} | {cell('one')} | {cell('paged')} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
