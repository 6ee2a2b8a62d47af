#!/usr/bin/env python3
"""Peak memory of one read, per reader path: `jsonbridge test` over a saved energy body.

For each metric shape that takes a different reader path (slots, items built, pruned tree,
aggregates, a captured index, a filter), runs the release binary's `test` sub-command (the
daemon's own reader, see src/inspect.rs) over the same body and reports the child's peak RSS
(ru_maxrss) next to the body size and the path `test` names. Nothing touches the network.

    python3 bench/memory.py                      # 100k pods, 30 points (about 55 MB)
    python3 bench/memory.py --pods 200 --points 30
    python3 bench/memory.py --binary /other/checkout/target/release/jsonbridge
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(os.path.dirname(ROOT), "shared", "bench", "gen_energy.py")

EACH = "$.apps.{app}.{ns}[*]"
SHAPES = [
    ("slots", EACH, {"pod": "{@.name}"}, "@.energy_consumed[-1]"),
    ("items built (filter in the value)", EACH, {"pod": "{@.name}"}, "max(@.energy_consumed[?@ > 100])"),
    ("pruned tree (label from a captured node)", EACH, {"pod": "{@.name}", "x": "{ns[0].name}"}, "@.energy_consumed[-1]"),
    ("length() over each namespace", "$.apps.{app}.{ns}", {}, "length(@)"),
    ("count() over each namespace", "$.apps.{app}.{ns}", {}, "count(@[*])"),
    ("sum() over each namespace", "$.apps.{app}.{ns}", {}, "sum(@[*].energy_consumed[-1])"),
    ("captured index", "$.apps.{app}.{ns}[{i}]", {"i": "{i}"}, "@.energy_consumed[-1]"),
    ("filter in each", "$.apps.*.*[?@.name != 'x']", {"pod": "{@.name}"}, "@.energy_consumed[-1]"),
    ("filter in each, first and last point", "$.apps.*.*[?@.energy_consumed[0] > 100]", {"pod": "{@.name}"}, "@.energy_consumed[-1]"),
    ("count() over the document", "$", {}, "count($.apps.*.*[*])"),
    ("sum() over the document", "$", {}, "sum($.apps.*.*[*].energy_consumed[-1])"),
    ("max() of every point in the document", "$", {}, "max($.apps.*.*[*].energy_consumed[*])"),
    ("filter calling a function", "$.apps.*.*[?length(@.energy_consumed) > 1]", {"pod": "{@.name}"}, "@.energy_consumed[-1]"),
    ("descendant search in a value", "$", {}, "count($..name)"),
    ("descendant search in each", "$..energy_consumed", {}, "length(@)"),
]


def config(each, labels, value):
    lab = ", ".join(f'{k}: "{v}"' for k, v in labels.items())
    return (
        "sources:\n  - name: e\n    url: file://body.json\n    max_series: 10000000\n"
        "    metrics:\n      - name: m\n        help: M.\n"
        f"        each: \"{each}\"\n        labels: {{{lab}}}\n        value: \"{value}\"\n"
    )


def measure(binary, cfg, body):
    code = (
        "import resource,subprocess,sys;"
        "p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.stderr.write(p.stderr)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, binary, "test", cfg, "--input", body],
        capture_output=True,
        text=True,
    )
    return int(p.stdout.strip() or 0), p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", type=int, default=10)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "jsonbridge"))
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build and args.binary.startswith(ROOT):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as d:
        body = os.path.join(d, "body.json")
        with open(body, "w") as f:
            subprocess.run(
                [sys.executable, GEN, "--apps", str(args.apps), "--namespaces", str(args.namespaces),
                 "--pods", str(args.pods), "--points", str(args.points)],
                stdout=f, check=True,
            )
        size = os.path.getsize(body)
        print(f"body: {size / 1e6:.1f} MB ({args.apps * args.namespaces * args.pods} pods, {args.points} points)")
        print(f"| reader path | metric | `test` says | peak RSS | x body |")
        print(f"|---|---|---|---|---|")
        for name, each, labels, value in SHAPES:
            cfg = os.path.join(d, "c.yaml")
            with open(cfg, "w") as f:
                f.write(config(each, labels, value))
            peak_kib, err = measure(args.binary, cfg, body)
            path = "?"
            for line in err.splitlines():
                if "(read: " in line:
                    path = line.split("(read: ", 1)[1].rstrip(")")
                if line.startswith("jsonbridge:") or "error" in line.lower() and "(read" not in line:
                    path = line.strip()[:60]
            mb = peak_kib / 1024
            print(f"| {name} | `{value}` | {path} | {mb:.0f} MB | {peak_kib * 1024 / size:.1f} |")


if __name__ == "__main__":
    main()
