#!/usr/bin/env python3
"""Helper of bench/scrape.sh (stdlib only); not meant to be run alone.

Subcommands:
  targets   one asyncio process serving every scrape target: one big target
            (BIG_SERIES series: counter and gauge families of 100 series)
            and N small ones (about 80 series each: counters, a histogram,
            a summary, gauges, one info series whose label value changes
            every 10 minutes), each on its own loopback port, values
            changing on every scrape; text format 0.0.4, keep-alive. A
            control port answers /stats: scrapes served per agent (told
            apart by User-Agent) and per kind of target.
  measure   after the warm-up, snapshots each agent's CPU (utime+stime),
            RSS (sampled every second over the window: last and max, and
            VmHWM) and the scrapes the targets served it; the counting
            proxy's log (bench/remote_write.py proxy) gives wire bytes and
            samples; prints one Markdown table.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# The targets


def agent_of(user_agent):
    ua = user_agent.lower()
    if ua.startswith("prometheus/"):
        return "prometheus"
    if ua.startswith("cairn"):
        return "cairn"
    return "other"


def big_body(n_series, scrape_no):
    """n_series series in families of 100: even families counters, odd
    gauges; every value moves on every scrape."""
    out = []
    fam = 0
    done = 0
    while done < n_series:
        k = min(100, n_series - done)
        name = f"bench_big_family_{fam:03d}"
        if fam % 2 == 0:
            out.append(f"# HELP {name}_total A counter family of the big target.\n")
            out.append(f"# TYPE {name}_total counter\n")
            for i in range(k):
                out.append(f'{name}_total{{shard="s{i % 10}",item="i{i}"}} {scrape_no * (i + 1) + fam}\n')
        else:
            out.append(f"# HELP {name} A gauge family of the big target.\n")
            out.append(f"# TYPE {name} gauge\n")
            for i in range(k):
                out.append(f'{name}{{shard="s{i % 10}",item="i{i}"}} {((scrape_no * 7919 + i * 104729) % 100000) / 100}\n')
        done += k
        fam += 1
    return "".join(out)


BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5"]


def small_body(port, scrape_no):
    """About 80 series, an application's usual mix."""
    out = []
    out.append("# HELP app_http_requests_total Requests served.\n# TYPE app_http_requests_total counter\n")
    for m in ("GET", "POST", "PUT"):
        for p in ("/", "/api/v1/items", "/api/v1/users", "/login"):
            for code in ("200", "500"):
                v = scrape_no * (3 if code == "200" else 1) + len(p) + port % 97
                out.append(f'app_http_requests_total{{method="{m}",path="{p}",code="{code}"}} {v}\n')
    out.append("# HELP app_request_duration_seconds Request latency.\n"
               "# TYPE app_request_duration_seconds histogram\n")
    for m in ("GET", "POST", "PUT"):
        cum = 0
        for j, b in enumerate(BUCKETS):
            cum += scrape_no * (j + 1)
            out.append(f'app_request_duration_seconds_bucket{{method="{m}",le="{b}"}} {cum}\n')
        cum += scrape_no
        out.append(f'app_request_duration_seconds_bucket{{method="{m}",le="+Inf"}} {cum}\n')
        out.append(f'app_request_duration_seconds_sum{{method="{m}"}} {cum * 0.137:.3f}\n')
        out.append(f'app_request_duration_seconds_count{{method="{m}"}} {cum}\n')
    out.append("# HELP app_task_duration_seconds Background task time.\n"
               "# TYPE app_task_duration_seconds summary\n")
    for t in ("email", "report"):
        for j, q in enumerate(("0.5", "0.9", "0.99")):
            v = 0.01 * (j + 1) + (scrape_no % 13) / 1000
            out.append(f'app_task_duration_seconds{{task="{t}",quantile="{q}"}} {v:.4f}\n')
        out.append(f'app_task_duration_seconds_sum{{task="{t}"}} {scrape_no * 0.042:.3f}\n')
        out.append(f'app_task_duration_seconds_count{{task="{t}"}} {scrape_no}\n')
    out.append("# HELP app_queue_length Jobs waiting.\n# TYPE app_queue_length gauge\n")
    for q in ("default", "high", "low", "mail"):
        out.append(f'app_queue_length{{queue="{q}"}} {(scrape_no * 31 + len(q)) % 50}\n')
    # A label value that changes slowly (a deploy every 10 minutes).
    version = int(time.time() // 600) % 1000
    out.append("# HELP app_build_info The running build.\n# TYPE app_build_info gauge\n")
    out.append(f'app_build_info{{version="1.{version}.0"}} 1\n')
    out.append("# HELP app_open_connections Open client connections.\n# TYPE app_open_connections gauge\n")
    out.append(f"app_open_connections {(scrape_no * 17) % 200}\n")
    out.append("# HELP app_cache_hits_total Cache hits.\n# TYPE app_cache_hits_total counter\n")
    out.append(f"app_cache_hits_total {scrape_no * 11}\n")
    out.append("# HELP app_cache_misses_total Cache misses.\n# TYPE app_cache_misses_total counter\n")
    out.append(f"app_cache_misses_total {scrape_no * 2}\n")
    return "".join(out)


class Targets:
    def __init__(self, big_series):
        self.big_series = big_series
        self.stats = {}  # "agent/kind" -> scrapes
        self.scrape_no = {}  # port -> scrapes served

    def body(self, kind, port):
        n = self.scrape_no.get(port, 0) + 1
        self.scrape_no[port] = n
        if kind == "big":
            return big_body(self.big_series, n)
        return small_body(port, n)

    async def serve(self, kind, port, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                ua = ""
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "user-agent":
                        ua = v.strip()
                key = f"{agent_of(ua)}/{kind}"
                self.stats[key] = self.stats.get(key, 0) + 1
                data = self.body(kind, port).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                             + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def control(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            data = json.dumps(self.stats).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def run_targets(args):
    t = Targets(args.big_series)
    servers = [await asyncio.start_server(t.control, "127.0.0.1", args.control)]
    servers.append(await asyncio.start_server(
        lambda r, w, p=args.big_port: t.serve("big", p, r, w), "127.0.0.1", args.big_port))
    for p in args.small_ports:
        servers.append(await asyncio.start_server(
            lambda r, w, p=p: t.serve("small", p, r, w), "127.0.0.1", p))
    await asyncio.gather(*(s.serve_forever() for s in servers))


def cmd_targets(args):
    args.small_ports = [int(p) for p in args.small_ports.split(",") if p]
    asyncio.run(run_targets(args))


# ---------------------------------------------------------------------------
# Measuring


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def proc_mem(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.loads(r.read())


def mib(b):
    return f"{b / 1048576:.1f}"


def cmd_measure(args):
    agents = []
    for spec in args.agent:
        name, pid, route = spec.split(",")
        agents.append({"name": name, "pid": int(pid), "route": route, "rss_max": 0})
    print(f"[{time.strftime('%H:%M:%S')}] warm-up {args.warmup} s", file=sys.stderr, flush=True)
    time.sleep(args.warmup)
    stats0 = fetch_json(args.targets + "/stats")
    nlog0 = len(fetch_json(args.proxy + "/log")["records"]) if args.proxy else 0
    t0 = time.time()
    for a in agents:
        a["cpu0"] = proc_cpu(a["pid"])
    print(f"[{time.strftime('%H:%M:%S')}] window {args.window} s", file=sys.stderr, flush=True)
    while time.time() < t0 + args.window:
        for a in agents:
            a["rss_max"] = max(a["rss_max"], proc_mem(a["pid"])["VmRSS"])
        time.sleep(1)
    t1 = time.time()
    for a in agents:
        a["cpu1"] = proc_cpu(a["pid"])
        m = proc_mem(a["pid"])
        a["rss"], a["hwm"] = m["VmRSS"], m["VmHWM"]
        a["rss_max"] = max(a["rss_max"], m["VmRSS"])
    stats1 = fetch_json(args.targets + "/stats")
    recs = []
    if args.proxy:
        # Samples stamped in the window may still be in a send batch: wait
        # out the senders' batch deadline (5 s for both) before reading the log.
        time.sleep(args.grace)
        recs = fetch_json(args.proxy + "/log")["records"][nlog0:]

    expected = args.n_targets * args.window / args.interval
    rows = []
    for a in agents:
        scrapes = sum(stats1.get(f"{a['name']}/{k}", 0) - stats0.get(f"{a['name']}/{k}", 0)
                      for k in ("big", "small"))
        big = stats1.get(f"{a['name']}/big", 0) - stats0.get(f"{a['name']}/big", 0)
        cpu = a["cpu1"] - a["cpu0"]
        mine = [r for r in recs if r["route"] == a["route"] and t0 <= r["t"] < t1 and 200 <= r["status"] < 300]
        # Wire bytes per sample: the requests that arrived in the window.
        nbytes = sum(r["bytes"] for r in mine)
        nsamples = sum(r["samples"] or 0 for r in mine)
        # Samples per scrape: those stamped in the window, whenever they arrived.
        stamped = sum(v for r in recs if r["route"] == a["route"] and 200 <= r["status"] < 300
                      for k, v in r.get("ts", {}).items() if t0 * 1000 <= int(k) < t1 * 1000)
        a.update(scrapes=scrapes, big=big, cpu=cpu, nbytes=nbytes, nsamples=nsamples, nreq=len(mine),
                 stamped=stamped)
        rows.append(a)

    out = {"t0": t0, "t1": t1, "expected_scrapes": expected, "agents": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)

    def per_scrape(a):
        return a["cpu"] / a["scrapes"] if a["scrapes"] else float("nan")

    cols = [("scrapes served in the window (expected %d)" % round(expected), lambda a: f"{a['scrapes']}"),
            ("of them the big target", lambda a: f"{a['big']}"),
            ("CPU s in the window (utime+stime)", lambda a: f"{a['cpu']:.2f}"),
            ("CPU ms per scrape", lambda a: f"{per_scrape(a) * 1000:.3f}"),
            ("CPU % of one core", lambda a: f"{a['cpu'] / (t1 - t0) * 100:.2f}"),
            ("RSS MiB at the end", lambda a: mib(a["rss"])),
            ("RSS MiB max in the window (1 s samples)", lambda a: mib(a["rss_max"])),
            ("VmHWM MiB (peak since start)", lambda a: mib(a["hwm"]))]
    if args.proxy:
        cols += [("samples stamped in the window, delivered", lambda a: f"{a['stamped']}"),
                 ("of them per scrape", lambda a: f"{a['stamped'] / a['scrapes']:.1f}" if a["scrapes"] else "-"),
                 ("remote_write requests arriving in the window", lambda a: f"{a['nreq']}"),
                 ("wire bytes per sample (request bodies)",
                  lambda a: f"{a['nbytes'] / a['nsamples']:.2f}" if a["nsamples"] else "-")]
    names = [a["name"] for a in rows]
    ratio = len(rows) == 2
    hdr = "| | " + " | ".join(names) + (f" | {names[0]} / {names[1]} |" if ratio else " |")
    print(hdr)
    print("|---" * (len(names) + 1 + ratio) + "|")
    ratio_cols = {"CPU ms per scrape": per_scrape, "RSS MiB at the end": lambda a: a["rss"],
                  "RSS MiB max in the window (1 s samples)": lambda a: a["rss_max"],
                  "VmHWM MiB (peak since start)": lambda a: a["hwm"],
                  "wire bytes per sample (request bodies)":
                      lambda a: a["nbytes"] / a["nsamples"] if a["nsamples"] else float("nan")}
    for title, fmt in cols:
        line = f"| {title} | " + " | ".join(fmt(a) for a in rows)
        if ratio:
            r = ""
            if title in ratio_cols:
                x, y = ratio_cols[title](rows[0]), ratio_cols[title](rows[1])
                r = f"{x / y:.2f}×" if y else "-"
            line += f" | {r}"
        print(line + " |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("targets")
    t.add_argument("--control", type=int, required=True)
    t.add_argument("--big-port", type=int, required=True)
    t.add_argument("--big-series", type=int, default=10000)
    t.add_argument("--small-ports", default="")
    m = sub.add_parser("measure")
    m.add_argument("--targets", required=True, help="the targets' control URL")
    m.add_argument("--proxy", default="", help="the counting proxy's control URL")
    m.add_argument("--agent", action="append", required=True, help="name,pid,proxy-route")
    m.add_argument("--warmup", type=float, required=True)
    m.add_argument("--window", type=float, required=True)
    m.add_argument("--interval", type=float, required=True)
    m.add_argument("--n-targets", type=int, required=True)
    m.add_argument("--grace", type=float, default=10, help="seconds to wait for the last sends")
    m.add_argument("--out", required=True)
    args = ap.parse_args()
    {"targets": cmd_targets, "measure": cmd_measure}[args.cmd](args)


if __name__ == "__main__":
    main()
