#!/usr/bin/env python3
"""Scrape two running exporters alternately and compare their cost.

Called by bench/compare.sh (which builds and starts both); stdlib only.
Each --target is NAME,PID,URL. Prints a Markdown table and the ratios of
the first target to the second.
"""

import argparse
import gzip
import os
import statistics
import sys
import time
import urllib.request


class Target:
    def __init__(self, spec):
        name, pid, url = spec.split(",", 2)
        self.name, self.pid, self.url = name, int(pid), url
        self.latencies_ms = []
        self.body = b""
        self.wire_bytes = 0
        self.gzip = False

    def scrape(self, record):
        req = urllib.request.Request(self.url, headers={"Accept-Encoding": "gzip"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            enc = resp.headers.get("Content-Encoding", "")
        elapsed = (time.perf_counter() - t0) * 1000.0
        if record:
            self.latencies_ms.append(elapsed)
        self.gzip = enc == "gzip"
        self.wire_bytes = len(raw)
        self.body = gzip.decompress(raw) if self.gzip else raw

    def cpu_ticks(self):
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read()
        # Fields after the parenthesised comm; utime and stime are 14 and 15.
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    def rss_mb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def series(self):
        return sum(
            1 for l in self.body.splitlines() if l and not l.startswith(b"#")
        )

    def node_families(self):
        return {
            l.split()[2].decode()
            for l in self.body.splitlines()
            if l.startswith(b"# TYPE node_")
        }

    def failed_collectors(self):
        out = []
        for l in self.body.splitlines():
            if l.startswith(b"node_scrape_collector_success{") and l.endswith(b" 0"):
                out.append(l.split(b'"')[1].decode())
        return out


def p90(xs):
    xs = sorted(xs)
    # Nearest-rank percentile.
    return xs[max(0, -(-len(xs) * 90 // 100) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    targets = [Target(s) for s in args.target]
    if len(targets) != 2 or args.scrapes < 1:
        sys.exit("compare.py: need exactly two targets and --scrapes >= 1")

    for _ in range(args.warmup):
        for t in targets:
            t.scrape(record=False)
    start = {t.name: t.cpu_ticks() for t in targets}
    for _ in range(args.scrapes):
        for t in targets:
            t.scrape(record=True)
    hz = os.sysconf("SC_CLK_TCK")
    rows = []
    for t in targets:
        ticks = t.cpu_ticks() - start[t.name]
        rows.append(
            {
                "name": t.name,
                "rss": t.rss_mb(),
                "cpu": ticks * 1000.0 / hz / args.scrapes,
                "p50": statistics.median(t.latencies_ms),
                "p90": p90(t.latencies_ms),
                "series": t.series(),
                "bytes": len(t.body),
                "wire": t.wire_bytes,
                "gzip": t.gzip,
            }
        )

    print("| exporter | RSS after (MB) | CPU / scrape (ms) | latency p50 (ms) "
          "| latency p90 (ms) | series | response (bytes) | gzip on wire (bytes) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wire = f"{r['wire']}" if r["gzip"] else f"{r['wire']} (not gzipped)"
        print(f"| {r['name']} | {r['rss']:.1f} | {r['cpu']:.3f} | {r['p50']:.2f} "
              f"| {r['p90']:.2f} | {r['series']} | {r['bytes']} | {wire} |")

    a, b = rows
    def ratio(k):
        return f"{a[k] / b[k]:.2f}" if b[k] else "n/a"
    print()
    print(f"Ratios {a['name']}/{b['name']}: RSS {ratio('rss')}, CPU/scrape {ratio('cpu')}, "
          f"p50 {ratio('p50')}, p90 {ratio('p90')}, series {ratio('series')}, "
          f"bytes {ratio('bytes')}")
    print()
    print(f"CPU time is utime+stime from /proc/PID/stat over the {args.scrapes} measured "
          f"scrapes (clock tick {1000 / hz:.0f} ms, so totals are coarse). Series and bytes "
          "include each exporter's own meta metrics (node_exporter: go_*, process_*, promhttp_*).")
    only = sorted(targets[1].node_families() - targets[0].node_families())
    if only:
        shown = ", ".join(only[:8]) + (", ..." if len(only) > 8 else "")
        print(f"\nnode_* families only {b['name']} emits ({len(only)}): {shown}")
    for t in targets:
        failed = t.failed_collectors()
        if failed:
            print(f"\n{t.name}: collectors reporting node_scrape_collector_success 0: "
                  f"{', '.join(failed)}")


if __name__ == "__main__":
    main()
