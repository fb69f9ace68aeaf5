#!/usr/bin/env python3
"""Helper of bench/remote_write.sh (stdlib only); not meant to be run alone.

Subcommands:
  proxy          the counting remote_write proxy: one listener per agent
                 ("route") in front of one receiver, a control port to take
                 every route down (listeners closed: connection refused, open
                 connections shut; or, with `/down?mode=503`, every request
                 answered 503 without reaching the receiver) and up again,
                 and a log of every request
                 (arrival time, body bytes, status, and, decoded off the
                 request path, samples and their timestamps).
  measure        warm-up, steady state, outage, drain; snapshots of
                 /proc/PID/{io,stat,status} and each agent's own counters.
  backlog-rss    cairn started on a synthetic 24 h backlog, receiver down:
                 RSS after a while.
  backlog-drain  starts the receiver; drain throughput, timed on cairn's
                 writes (/proc/PID/io wchar), completion confirmed by the
                 receiver's row counter.
  report         the Markdown tables, from the JSON the others wrote.
"""

import argparse
import collections
import http.client
import http.server
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Remote-write decoding (snappy block format, protobuf WriteRequest)


def uvarint(b, i):
    x = 0
    s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        if c < 0x80:
            return x, i
        s += 7


def snappy_decompress(b):
    n, i = uvarint(b, 0)
    out = bytearray()
    end = len(b)
    while i < end:
        tag = b[i]
        i += 1
        t = tag & 3
        if t == 0:
            ln = tag >> 2
            if ln < 60:
                ln += 1
            else:
                nb = ln - 59
                ln = int.from_bytes(b[i:i + nb], "little") + 1
                i += nb
            out += b[i:i + ln]
            i += ln
            continue
        if t == 1:
            ln = ((tag >> 2) & 7) + 4
            off = ((tag >> 5) << 8) | b[i]
            i += 1
        elif t == 2:
            ln = (tag >> 2) + 1
            off = b[i] | (b[i + 1] << 8)
            i += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(b[i:i + 4], "little")
            i += 4
        start = len(out) - off
        if off <= 0 or start < 0:
            raise ValueError("bad snappy offset")
        if off >= ln:
            out += out[start:start + ln]
        else:
            # Overlapping copy: the pattern of `off` bytes repeats.
            pat = bytes(out[start:])
            reps = ln // off + 1
            out += (pat * reps)[:ln]
    if len(out) != n:
        raise ValueError(f"snappy length {len(out)} != {n}")
    return bytes(out)


def skip_field(b, i, wt):
    if wt == 0:
        _, i = uvarint(b, i)
    elif wt == 1:
        i += 8
    elif wt == 2:
        ln, i = uvarint(b, i)
        i += ln
    elif wt == 5:
        i += 4
    else:
        raise ValueError(f"wire type {wt}")
    return i


def decode_write_request(body):
    """(samples, series, {timestamp_ms: samples}, metadata entries)."""
    b = snappy_decompress(body)
    counts = collections.Counter()
    samples = series = metadata = 0
    i, end = 0, len(b)
    while i < end:
        key, i = uvarint(b, i)
        f, wt = key >> 3, key & 7
        if wt != 2:
            i = skip_field(b, i, wt)
            continue
        ln, i = uvarint(b, i)
        e = i + ln
        if f == 1:
            series += 1
            j = i
            while j < e:
                k, j = uvarint(b, j)
                if k == 0x12:  # samples = 2, length-delimited
                    sl, j = uvarint(b, j)
                    se = j + sl
                    ts = 0
                    while j < se:
                        sk, j = uvarint(b, j)
                        if sk == 0x10:  # timestamp = 2, varint
                            ts, j = uvarint(b, j)
                            if ts >= 1 << 63:
                                ts -= 1 << 64
                        else:
                            j = skip_field(b, j, sk & 7)
                    samples += 1
                    counts[ts] += 1
                else:
                    j = skip_field(b, j, k & 7)
        elif f == 3:
            metadata += 1
        i = e
    return samples, series, counts, metadata


# ---------------------------------------------------------------------------
# The counting proxy


class Proxy:
    def __init__(self, upstream, routes):
        host, _, rest = upstream.partition("://")[2].partition("/")
        self.up_host, self.up_port = host.split(":")[0], int(host.split(":")[1])
        self.up_path = "/" + rest
        self.routes = {name: port for name, port in routes}
        self.servers = {}
        self.conns = {name: set() for name in self.routes}
        self.lock = threading.Lock()
        self.records = []
        self.decode_q = queue.Queue()
        self.local = threading.local()
        self.is_up = False
        # While set, every request is answered with it, not forwarded.
        self.refuse_status = None
        threading.Thread(target=self.decoder, daemon=True).start()

    # Upstream connection per handler thread, kept alive.
    def forward(self, headers, body):
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.up_host, self.up_port, timeout=30)
                self.local.conn = conn
            try:
                h = {k: v for k, v in headers.items()
                     if k.lower() in ("content-encoding", "content-type", "user-agent",
                                      "x-prometheus-remote-write-version")}
                h["Content-Length"] = str(len(body))
                conn.request("POST", self.up_path, body=body, headers=h)
                r = conn.getresponse()
                data = r.read()
                return r.status, data
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    return 502, b"proxy: upstream unreachable\n"
        return 502, b""

    def record(self, route, t, nbytes, status, body):
        with self.lock:
            rec = {"route": route, "t": t, "bytes": nbytes, "status": status,
                   "samples": None}
            self.records.append(rec)
        if 200 <= status < 300:
            self.decode_q.put((rec, body))
        else:
            rec["samples"] = 0
            rec["ts"] = {}

    def decoder(self):
        while True:
            rec, body = self.decode_q.get()
            try:
                n, series, counts, meta = decode_write_request(body)
                rec["series"] = series
                rec["metadata"] = meta
                rec["ts"] = {str(k): v for k, v in counts.items()}
                rec["samples"] = n
            except Exception as e:  # a body we cannot read: say so, count 0
                rec["error"] = str(e)
                rec["ts"] = {}
                rec["samples"] = 0
            self.decode_q.task_done()

    def make_handler(self, route):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with proxy.lock:
                    proxy.conns[route].add(self.connection)

            def finish(self):
                with proxy.lock:
                    proxy.conns[route].discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *a):
                pass

            def read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        n = int(self.rfile.readline().split(b";")[0], 16)
                        if n == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(n))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_POST(self):
                t = time.time()
                body = self.read_body()
                refuse = proxy.refuse_status
                if refuse is not None:
                    status, data = refuse, b"proxy: receiver down\n"
                else:
                    status, data = proxy.forward(self.headers, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass
                proxy.record(route, t, len(body), status, body)

            def do_GET(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def up(self):
        with self.lock:
            if self.is_up:
                return
            self.is_up = True
        for name, port in self.routes.items():
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), self.make_handler(name))
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
            self.servers[name] = srv

    def down(self):
        with self.lock:
            if not self.is_up:
                return
            self.is_up = False
        for name, srv in list(self.servers.items()):
            srv.shutdown()
            srv.server_close()  # new connections: refused
            with self.lock:
                open_conns = list(self.conns[name])
            for c in open_conns:  # keep-alive connections: shut
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.servers.clear()


def cmd_proxy(args):
    routes = []
    for r in args.route:
        name, port = r.split("=")
        routes.append((name, int(port)))
    proxy = Proxy(args.upstream, routes)
    proxy.up()

    class Control(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            path, _, qs = self.path.partition("?")
            out = {"ok": True}
            if path == "/down":
                if qs == "mode=503":
                    proxy.refuse_status = 503
                else:
                    proxy.down()
                out["t"] = time.time()
            elif path == "/up":
                proxy.refuse_status = None
                proxy.up()
                out["t"] = time.time()
            elif path == "/log":
                since = int(qs.split("=")[1]) if qs.startswith("since=") else 0
                proxy.decode_q.join()  # every logged request decoded
                with proxy.lock:
                    out["records"] = proxy.records[since:]
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ctl = http.server.ThreadingHTTPServer(("127.0.0.1", args.control), Control)
    ctl.serve_forever()


# ---------------------------------------------------------------------------
# Process and agent snapshots


def proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out


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


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def counters(url):
    """name -> sum over its series (labels ignored), from a text exposition."""
    out = collections.defaultdict(float)
    for line in fetch(url).splitlines():
        if not line or line[0] == "#":
            continue
        try:
            series, value = line.rsplit(" ", 1)
            v = float(value)
        except ValueError:
            continue
        name = series.split("{", 1)[0]
        out[name] += v
    return dict(out)


def counters_where(url, name, label_sub):
    total = 0.0
    for line in fetch(url).splitlines():
        if line.startswith(name + "{") and label_sub in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Agent:
    def __init__(self, spec):
        f = spec.split(",")
        self.name, self.kind, self.pid, self.url, self.route = f[0], f[1], int(f[2]), f[3], f[4]
        self.ne_pid = int(f[5]) if len(f) > 5 and f[5] else None

    def snapshot(self):
        s = {"t": time.time(), "io": proc_io(self.pid), "cpu": proc_cpu(self.pid),
             "mem": proc_mem(self.pid)}
        if self.ne_pid:
            s["ne_cpu"] = proc_cpu(self.ne_pid)
            s["ne_mem"] = proc_mem(self.ne_pid)
        c = counters(self.url)
        if self.kind.startswith("cairn"):
            s["collected"] = c.get("cairn_samples_collected_total", 0)
            s["committed"] = c.get("cairn_wal_samples_appended_total", 0)
            s["scrapes"] = c.get("cairn_collections_total", 0)
            s["sent_samples"] = c.get("cairn_remote_write_samples_sent_total", 0)
            s["sent_bytes"] = c.get("cairn_remote_write_bytes_sent_total", 0)
            s["commits"] = c.get("cairn_wal_commits_total", 0)
            s["backlog"] = c.get("cairn_wal_backlog_samples", 0)
        elif self.kind == "prometheus":
            s["collected"] = c.get("prometheus_agent_samples_appended_total", 0)
            s["scrapes"] = c.get("prometheus_target_interval_length_seconds_count", 0)
            s["sent_samples"] = c.get("prometheus_remote_storage_samples_total", 0)
            s["sent_bytes"] = c.get("prometheus_remote_storage_bytes_total", 0)
        elif self.kind == "vmagent":
            scrapes = c.get("vm_promscrape_scrapes_total", 0)
            # node_exporter's samples plus the 5 series vmagent adds per
            # scrape (up, scrape_duration_seconds, scrape_samples_scraped,
            # scrape_samples_post_metric_relabeling, scrape_series_added).
            s["collected"] = c.get("vm_promscrape_scraped_samples_sum", 0) + 5 * scrapes
            s["scrapes"] = scrapes
            s["sent_samples"] = c.get("vmagent_remotewrite_block_size_rows_sum", 0)
            s["sent_bytes"] = c.get("vmagent_remotewrite_bytes_sent_total", 0)
            s["pq_written"] = c.get("vm_persistentqueue_bytes_written_total", 0)
        return s


def control(base, path):
    return json.loads(fetch(base + path, timeout=120))


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def samples_between(records, route, t_from, t_to, ts_from=None, ts_to=None):
    """Body bytes and samples of 2xx requests of `route` arriving in
    [t_from, t_to); with ts bounds (seconds), only samples with timestamps
    in [ts_from, ts_to)."""
    if ts_from is not None:
        ts_from, ts_to = ts_from * 1000, ts_to * 1000
    nbytes = nsamples = nreq = 0
    for r in records:
        if r["route"] != route or not (t_from <= r["t"] < t_to) or not (200 <= r["status"] < 300):
            continue
        nreq += 1
        nbytes += r["bytes"]
        if ts_from is None:
            nsamples += r["samples"]
        else:
            nsamples += sum(v for k, v in r["ts"].items() if ts_from <= int(k) < ts_to)
    return nbytes, nsamples, nreq


def last_backlog_request(recs, route, t_up):
    """Arrival of the last request after `t_up` carrying a sample older than it."""
    up_ms = t_up * 1000
    return max((r["t"] for r in recs if r["route"] == route and r["t"] >= t_up
                and r["samples"] and min(int(k) for k in r["ts"]) < up_ms), default=None)


def cmd_measure(args):
    agents = [Agent(a) for a in args.agent]
    ctl = args.control
    res = load(args.out)
    res["config"] = {"warmup": args.warmup, "steady": args.steady, "outage": args.outage,
                     "drain_max": args.drain_max, "interval": args.interval}
    res["agents"] = {a.name: {"kind": a.kind, "has_ne": a.ne_pid is not None} for a in agents}

    started = time.time()
    # (A batched cairn sends only after its first batch: not waited for.)
    log("waiting for every agent to deliver a first request (max 60 s)")
    deadline = time.time() + 60
    while True:
        recs = control(ctl, "/log")["records"]
        seen = {r["route"] for r in recs if 200 <= r["status"] < 300}
        missing = [a.name for a in agents if a.route not in seen and a.kind != "cairn-batched"]
        if not missing:
            break
        if time.time() > deadline:
            sys.exit(f"remote_write.py: no request from {', '.join(missing)} within 60 s")
        time.sleep(1)
    rest = args.warmup - (time.time() - started)
    log(f"warm-up: {max(0, rest):.0f} s more")
    time.sleep(max(0, rest))

    snaps = {a.name: [] for a in agents}

    def snap_all():
        for a in agents:
            snaps[a.name].append(a.snapshot())

    log(f"steady state {args.steady} s (receiver up)")
    snap_all()
    time.sleep(args.steady)
    snap_all()
    t_down = control(ctl, "/down")["t"]
    log(f"outage {args.outage} s (receiver down: connections refused)")
    time.sleep(args.outage)
    snap_all()
    t_up = control(ctl, "/up")["t"]
    log(f"receiver up; waiting for every agent to drain (max {args.drain_max} s)")

    # Drained: the samples timestamped in the outage that arrived reach 99 %
    # of what the agent collected then, and no request carrying samples
    # older than the recovery came for 3 s.
    expected = {a.name: snaps[a.name][2]["collected"] - snaps[a.name][1]["collected"]
                for a in agents}
    done = {}
    deadline = t_up + args.drain_max
    while len(done) < len(agents) and time.time() < deadline:
        time.sleep(1)
        recs = control(ctl, "/log")["records"]
        now = time.time()
        for a in agents:
            if a.name in done:
                continue
            _, got, _ = samples_between(recs, a.route, t_up, now + 1, t_down, t_up)
            last = last_backlog_request(recs, a.route, t_up)
            if got >= 0.97 * expected[a.name] and last is not None and now - last >= 3:
                done[a.name] = last
                log(f"  {a.name} drained {last - t_up:.1f} s after recovery")
    time.sleep(2)
    snap_all()
    recs = control(ctl, "/log")["records"]
    with open(args.out + ".requests.json", "w") as f:
        json.dump(recs, f)

    out = {}
    for a in agents:
        s0, s1, s2, s3 = snaps[a.name]
        st = {"series_per_scrape": (s1["collected"] - s0["collected"]) / max(1, s1["scrapes"] - s0["scrapes"])}
        st["steady_s"] = s1["t"] - s0["t"]
        st["outage_s"] = s2["t"] - s1["t"]
        for k, (x, y) in {"steady": (s0, s1), "outage": (s1, s2)}.items():
            st[f"{k}_written"] = y["io"]["write_bytes"] - x["io"]["write_bytes"]
            st[f"{k}_cancelled"] = y["io"]["cancelled_write_bytes"] - x["io"]["cancelled_write_bytes"]
            st[f"{k}_collected"] = y["collected"] - x["collected"]
            if a.kind.startswith("cairn"):
                st[f"{k}_committed"] = y["committed"] - x["committed"]
                st[f"{k}_commits"] = y["commits"] - x["commits"]
        st["cpu_steady"] = s1["cpu"] - s0["cpu"]
        if a.ne_pid:
            st["ne_cpu_steady"] = s1["ne_cpu"] - s0["ne_cpu"]
            st["ne_rss_rest"] = s1["ne_mem"]["VmRSS"]
        st["rss_rest"] = s1["mem"]["VmRSS"]
        st["rss_outage_end"] = s2["mem"]["VmRSS"]
        st["hwm_run"] = s3["mem"]["VmHWM"]
        # Wire, measured at the proxy.
        b, n, q = samples_between(recs, a.route, s0["t"], s1["t"])
        st["wire_steady"] = {"bytes": b, "samples": n, "requests": q}
        st["own_steady"] = {"bytes": s1["sent_bytes"] - s0["sent_bytes"],
                            "samples": s1["sent_samples"] - s0["sent_samples"]}
        end = done.get(a.name)
        st["drained_after"] = None if end is None else end - t_up
        st["first_after_up"] = min((r["t"] - t_up for r in recs if r["route"] == a.route
                                    and r["t"] >= t_up and 200 <= r["status"] < 300), default=None)
        t_end = end if end is not None else s3["t"]
        b, n, q = samples_between(recs, a.route, t_up, t_end + 1e-6)
        st["wire_drain"] = {"bytes": b, "samples": n, "requests": q}
        # vmagent counts rows when it builds a block, not when it is sent:
        # only comparable while nothing is queued.
        st["own_drain"] = None if a.kind == "vmagent" else {
            "bytes": s3["sent_bytes"] - s2["sent_bytes"],
            "samples": s3["sent_samples"] - s2["sent_samples"]}
        _, got, _ = samples_between(recs, a.route, t_up, s3["t"] + 1, t_down, t_up)
        st["outage_expected"] = expected[a.name]
        st["outage_delivered"] = got
        # Samples with outage timestamps that arrived before recovery: none
        # should (the listeners were closed).
        _, early, _ = samples_between(recs, a.route, t_down, t_up, t_down, t_up)
        st["outage_early"] = early
        # Gaps: distinct sample timestamps delivered from 10 s before the
        # outage to 10 s after it; the largest step should be one interval.
        stamps = sorted({int(k) for r in recs if r["route"] == a.route and 200 <= r["status"] < 300
                         for k in r["ts"] if (t_down - 10) * 1000 <= int(k) < (t_up + 10) * 1000})
        st["max_gap"] = max((b2 - a2 for a2, b2 in zip(stamps, stamps[1:])), default=None)
        st["max_gap"] = None if st["max_gap"] is None else st["max_gap"] / 1000
        if a.kind == "vmagent":
            st["pq_written_outage"] = s2["pq_written"] - s1["pq_written"]
        out[a.name] = st
    res["main"] = out
    res["main_times"] = {"t_down": t_down, "t_up": t_up}
    save(args.out, res)
    log("main phase measured")


def cmd_backlog_rss(args):
    res = load(args.out)
    log(f"cairn on the 24 h backlog, receiver down: waiting {args.wait} s")
    time.sleep(args.wait)
    mem = proc_mem(args.pid)
    c = counters(args.url)
    res["backlog"] = {
        "rss_down": mem["VmRSS"], "hwm_down": mem["VmHWM"],
        "down_seconds": args.wait,
        "backlog_samples": c.get("cairn_wal_backlog_samples", 0),
        "pending": c.get("cairn_remote_write_pending_samples", 0),
        "wal_bytes": c.get("cairn_wal_bytes", 0),
        "fill": json.loads(args.fill),
    }
    save(args.out, res)


def cmd_backlog_drain(args):
    """Starts the receiver (a fresh victoria-metrics: its row counter starts
    at 0) and times the drain on cairn's side: /proc/PID/io wchar (bytes
    cairn wrote to sockets and files) polled every 10 ms from before the
    receiver starts. While the receiver is down a refused connection writes
    nothing, so the drain starts after the last poll within 4 KiB of the
    starting total (a WAL record or a log line is smaller than a request)
    and ends at the first poll within 16 KiB of the final total. The
    receiver's `vm_rows_inserted_total` (updated once a second) says when
    everything arrived. The receiver is left running; its pid goes to
    --receiver-pidfile for the caller to stop."""
    import subprocess

    res = load(args.out)
    b = res["backlog"]
    target = b["fill"]["samples"]
    vm = args.vm_metrics
    cmd = [c for c in args.receiver if c != "--"]

    def rows():
        return counters_where(vm, "vm_rows_inserted_total", 'type="promremotewrite"')

    def wchar():
        with open(f"/proc/{args.pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
        return 0

    io0, cpu0 = proc_io(args.pid), proc_cpu(args.pid)
    w0 = wchar()
    t_launch = time.time()
    trace = [(t_launch, w0)]
    with open(args.receiver_log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    with open(args.receiver_pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    log(f"receiver starting; draining {target} samples (max {args.max} s)")
    deadline = t_launch + args.max
    last_rows_poll = 0.0
    r = 0
    t_up = t_all = None
    while time.time() < deadline:
        time.sleep(0.01)
        now = time.time()
        trace.append((now, wchar()))
        if t_all is None and now - last_rows_poll >= 0.25:
            last_rows_poll = now
            try:
                r = rows()
            except OSError:
                continue
            if t_up is None:
                t_up = now
            if r >= target:
                t_all = now
        if t_all is not None and now - t_all >= 0.5:
            break
    w_end = trace[-1][1]
    t_start = max((t for t, w in trace if w < w0 + 4096), default=t_launch)
    t_end = min((t for t, w in trace if w >= w_end - 16384), default=None)
    io1, cpu1, mem = proc_io(args.pid), proc_cpu(args.pid), proc_mem(args.pid)
    c = counters(args.url)
    b["receiver_up_after_launch"] = None if t_up is None else t_up - t_launch
    b["drain_start_after_launch"] = t_start - t_launch
    if t_all is not None and t_end is not None and t_end > t_start:
        b["drain_seconds"] = t_end - t_start
        b["drain_rate"] = target / (t_end - t_start)
    b["delivered_rows"] = r
    b["sent_samples"] = c.get("cairn_remote_write_samples_sent_total", 0)
    b["sent_bytes"] = c.get("cairn_remote_write_bytes_sent_total", 0)
    b["backlog_after"] = c.get("cairn_wal_backlog_samples", 0)
    b["dropped"] = c.get("cairn_remote_write_samples_dropped_total", 0)
    b["hwm_drain"] = mem["VmHWM"]
    b["rss_after"] = mem["VmRSS"]
    b["cpu_drain"] = cpu1 - cpu0
    b["written_drain"] = io1["write_bytes"] - io0["write_bytes"]
    b["read_drain"] = io1["rchar"] - io0["rchar"]
    b["requests"] = counters_where(args.url, "cairn_remote_write_requests_total", 'status="2xx"')
    b["request_seconds"] = c.get("cairn_remote_write_request_duration_seconds_sum", 0)
    save(args.out, res)
    if t_all is None:
        log(f"drain did not finish within {args.max} s ({r:.0f} of {target} rows)")
    else:
        log(f"drained in {b.get('drain_seconds', float('nan')):.2f} s")


# ---------------------------------------------------------------------------
# Report


def fmt(v, nd=1, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}{unit}"


def per(a, b, nd=2):
    return fmt(a / b, nd) if b else "n/a"


def mb(v):
    return None if v is None else v / 1e6


def cmd_report(args):
    batched = args.batched_flush
    res = load(args.out)
    m = res.get("main", {})
    cfg = res.get("config", {})
    names = list(m.keys())
    kinds = {n: res["agents"][n]["kind"] for n in names}
    bk = res.get("backlog")
    sep = "|---|" + "---:|" * len(names) + "---|"
    spc = ", ".join(f"{n} {m[n]['series_per_scrape']:.0f}" for n in names)
    print(f"- samples per collection (series, incl. stale markers and the scrapers' 5 synthetic "
          f"series): {spc}")
    if bk:
        f = bk["fill"]
        print(f"- 24 h backlog: {f['collections']} collections of {f['series']} series "
              f"({f['samples']:,} samples) {f['interval_ms'] / 1000:g} s apart, one record per "
              f"collection as flush_interval 0s writes them: {f['wal_bytes'] / 1e6:.1f} MB of WAL "
              f"({f['wal_bytes'] / f['samples']:.2f} B/sample on disk), built in {f['seconds']:.1f} s")

    def table(title, rows, note=None):
        print(f"\n### {title}\n")
        print("| | " + " | ".join(names) + " | aim (cairn) |")
        print(sep)
        for label, cells, aim in rows:
            print(f"| {label} | " + " | ".join(cells) + f" | {aim} |")
        if note:
            print(f"\n{note}")

    # 1. disk
    def disk(n, k):
        st = m[n]
        return per(st[f"{k}_written"], st[f"{k}_collected"])

    rows = [
        ("steady state, receiver up (B/sample)", [disk(n, "steady") for n in names], "≤ 3"),
        ("outage, receiver down (B/sample)", [disk(n, "outage") for n in names], "≤ 3"),
        ("written in steady state (KiB)", [fmt(m[n]["steady_written"] / 1024, 0) for n in names], ""),
        ("written during the outage (KiB)", [fmt(m[n]["outage_written"] / 1024, 0) for n in names], ""),
        ("samples collected, steady / outage",
         [f"{m[n]['steady_collected']:.0f} / {m[n]['outage_collected']:.0f}" for n in names], ""),
        ("WAL commits (fdatasync), steady / outage",
         [f"{m[n]['steady_commits']:.0f} / {m[n]['outage_commits']:.0f}" if kinds[n].startswith("cairn") else "–"
          for n in names], ""),
        ("KiB written per commit, steady / outage",
         [f"{per(m[n]['steady_written'] / 1024, m[n]['steady_commits'], 1)} / "
          f"{per(m[n]['outage_written'] / 1024, m[n]['outage_commits'], 1)}"
          if kinds[n].startswith("cairn") else "–" for n in names], ""),
    ]
    if any(k == "vmagent" for k in kinds.values()):
        rows.append(("vmagent persistent queue bytes written in the outage (its own counter, KiB)",
                     [fmt(m[n]["pq_written_outage"] / 1024, 0) if kinds[n] == "vmagent" else "–"
                      for n in names], ""))
    table("Bytes written to disk per collected sample (`/proc/PID/io` write_bytes)", rows,
          "write_bytes counts the pages a process dirties (whole 4 KiB pages), not the bytes of data "
          "in them; ext4's journal writes caused by fdatasync and rename are done by jbd2 and are "
          "not counted for anyone. Why cairn with `flush_interval = \"0s\"` is far above its WAL "
          "size per sample: each collection is one small record appended and fdatasync'd on its "
          "own, so the page holding the segment's tail is dirtied and written again at every "
          "commit (a ~1–2 KB record costs one or two whole pages), and with the receiver up each "
          "ack rewrites the remote's cursor page. With "
          f"`flush_interval = \"{batched}\"` collections are held in the stage (tmpfs) and sent "
          "from memory; only what is still undelivered after that long is written, with one "
          "commit: with the receiver up nothing is, during an outage one commit per "
          f"{batched}. The price: a power cut during an outage loses up to that much (a kill -9 "
          "does not: the stage outlives the process). Every column divides by the samples "
          "collected in the period. "
          "The `cairn at 15 s` column runs at the real interval: there each "
          "collection is its own request (batch_send_deadline 5 s < 15 s), so each is acked, "
          "and its steady state costs one more cursor page per collection than at 1 s.")

    # 2. wire
    def wire(n, key):
        w = m[n][key]
        return "–" if w is None else per(w["bytes"], w["samples"])

    rows = [
        ("steady state, at the proxy", [wire(n, "wire_steady") for n in names], ""),
        ("steady state, agent's own counters", [wire(n, "own_steady") for n in names], ""),
        ("samples per request, steady", [per(m[n]["wire_steady"]["samples"], m[n]["wire_steady"]["requests"], 0)
                                         for n in names], ""),
        ("draining after the outage, at the proxy", [wire(n, "wire_drain") for n in names], "≤ 5"),
        ("draining after the outage, agent's own counters", [wire(n, "own_drain") for n in names], "≤ 5"),
    ]
    if bk and bk.get("sent_samples"):
        rows.append(("draining the 24 h backlog (cairn's counters)",
                     [per(bk["sent_bytes"], bk["sent_samples"]) if n == "cairn" else "n/a" for n in names],
                     "≤ 5"))
    table("Bytes on the wire per sample (snappy-compressed request bodies)", rows,
          "Request bodies only (HTTP headers not counted). Prometheus' counter counts bytes of "
          "every attempt, cairn's and vmagent's only accepted ones. Prometheus also sends metadata-only "
          "requests once a minute (counted at the proxy, 0 samples).")

    # 3. RSS
    def rss_cell(n, key, ne=False):
        v = m[n].get(key)
        return fmt(mb(v), 1)

    rows = [
        ("at rest, receiver up (MB)", [rss_cell(n, "rss_rest") for n in names], ""),
        ("its node_exporter (MB)", [rss_cell(n, "ne_rss_rest") if m[n].get("ne_rss_rest") else "–"
                                   for n in names], ""),
        ("agent + node_exporter (MB)",
         [fmt(mb(m[n]["rss_rest"] + m[n].get("ne_rss_rest", 0)), 1) for n in names], ""),
        (f"end of the {cfg.get('outage', 0):g} s outage (MB)", [rss_cell(n, "rss_outage_end") for n in names], ""),
        ("peak over the run, VmHWM (MB)", [rss_cell(n, "hwm_run") for n in names], ""),
    ]
    if bk:
        days = bk["fill"]["collections"] * bk["fill"]["interval_ms"] / 3600e3
        rows.append((f"with a {days:.0f} h backlog, receiver down (MB)",
                     [fmt(mb(bk["rss_down"]), 1) if n == "cairn" else "n/a" for n in names], "≤ 16"))
        rows.append((f"peak while draining the {days:.0f} h backlog, VmHWM (MB)",
                     [fmt(mb(bk.get("hwm_drain")), 1) if n == "cairn" else "n/a" for n in names], "≤ 16"))
    table("Resident memory (VmRSS)", rows)

    # 4. drain
    rows = []
    if bk:
        f = bk["fill"]
        rows.append(("24 h backlog: samples", [f"{f['samples']:,}" if n == "cairn" else "n/a" for n in names], ""))
        rows.append(("24 h backlog: seconds to drain",
                     [fmt(bk.get("drain_seconds"), 2) if n == "cairn" else "n/a" for n in names], ""))
        rows.append(("24 h backlog: throughput (samples/s)",
                     [fmt(bk.get("drain_rate"), 0) if n == "cairn" else "n/a" for n in names], "≥ 200,000"))
        rows.append(("24 h backlog: requests, samples per request, seconds waiting on the receiver",
                     [f"{bk['requests']:.0f}, {bk['sent_samples'] / max(1, bk['requests']):.0f}, "
                      f"{bk.get('request_seconds', 0):.2f}" if n == "cairn" else "n/a" for n in names], ""))
        rows.append(("24 h backlog: cairn's CPU s, MB read, KiB written (write_bytes)",
                     [f"{bk['cpu_drain']:.2f}, {bk.get('read_drain', 0) / 1e6:.1f}, "
                      f"{bk['written_drain'] / 1024:.0f}" if n == "cairn" else "n/a" for n in names], ""))
        rows.append(("24 h backlog: delivered (receiver's rows) / dropped / left",
                     [f"{bk['delivered_rows']:,.0f} / {bk['dropped']:.0f} / {bk['backlog_after']:.0f}"
                      if n == "cairn" else "n/a" for n in names], ""))
    rows += [
        (f"{cfg.get('outage', 0):g} s outage: samples collected during it",
         [fmt(m[n]["outage_expected"], 0) for n in names], ""),
        ("… of them delivered after recovery", [
            f"{m[n]['outage_delivered']:,} ({100 * m[n]['outage_delivered'] / max(1, m[n]['outage_expected']):.1f} %)"
            for n in names], ""),
        ("largest gap between delivered timestamps, outage ± 10 s (s)",
         [fmt(m[n].get("max_gap"), 1) for n in names], ""),
        ("first request accepted, seconds after recovery", [fmt(m[n].get("first_after_up"), 1) for n in names], ""),
        ("last outage sample delivered, seconds after recovery", [fmt(m[n]["drained_after"], 1) for n in names], ""),
    ]
    table("Drain", rows,
          "24 h backlog: a fresh victoria-metrics is started after cairn ran "
          f"{bk.get('down_seconds', 0) if bk else 0:g} s with it down; the drain is timed by "
          "cairn's socket and file writes (`/proc/PID/io` wchar polled every 10 ms: from the "
          "last poll before its first request to the first within 16 KiB of its final total) "
          "and the receiver's `vm_rows_inserted_total` confirms every sample arrived. cairn sends "
          "one request at a time, so the time includes the receiver's ingestion on the same "
          "2 CPUs. VictoriaMetrics accepts 24 h old samples; a "
          "Prometheus receiver would reject them as out of bounds. Only cairn can be handed a "
          "synthetic backlog (Prometheus in agent mode does not resend a backlog after a restart; "
          f"vmagent's queue format is its own). After the {cfg.get('outage', 0):g} s outage the "
          "time to catch up is the retry backoff in force when the receiver comes back "
          "(defaults: Prometheus 30 ms doubling to 5 s, vmagent 1 s to 1 min, cairn 30 ms to "
          "5 min with jitter), not throughput: once a request is accepted every agent sends its "
          "backlog within a second; the batched cairn also waits for its batch. "
          "Delivered counts samples whose timestamps fall in the outage (±1 collection at the "
          "window's edges); the largest gap shows whether any collection went missing.")

    early = [n for n in names if m[n].get("outage_early")]
    if early:
        print(f"\nWarning: the proxy accepted samples timestamped in the outage during it for "
              f"{', '.join(early)}: the outage was not complete.")

    # 5. CPU
    rows = [
        (f"agent, {cfg.get('steady', 0):g} s steady state (s)", [fmt(m[n]["cpu_steady"], 2) for n in names], ""),
        ("its node_exporter (s)", [fmt(m[n].get("ne_cpu_steady"), 2) if m[n].get("ne_cpu_steady") is not None
                                   else "–" for n in names], ""),
        ("agent + node_exporter (s)", [fmt(m[n]["cpu_steady"] + m[n].get("ne_cpu_steady", 0), 2) for n in names], ""),
        ("per 1000 samples collected (ms)", [
            per(1e6 * (m[n]["cpu_steady"] + m[n].get("ne_cpu_steady", 0)), m[n]["steady_collected"], 2)
            for n in names], ""),
    ]
    table("CPU seconds (utime + stime from /proc/PID/stat)", rows,
          f"Clock tick {1000 / HZ:.0f} ms. cairn's time includes collecting (it is its own "
          "exporter): compare it with agent + node_exporter. Each competitor has its own "
          "node_exporter so its cost is counted whole.")

    # Summary against the aims.
    def val(n, f):
        try:
            return f(n)
        except (KeyError, TypeError, ZeroDivisionError):
            return None

    def disk_num(n, k):
        st = m[n]
        return st[f"{k}_written"] / st[f"{k}_collected"]

    def verdict(ok):
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    print("\n### cairn against its remote_write aims\n")
    print("| aim | measured | met |")
    print("|---|---:|---|")
    batched_name = next((n for n in names if kinds[n] == "cairn-batched"), None)
    for n, label in (("cairn", 'wal.flush_interval = "0s" (default)'),
                     (batched_name, f'wal.flush_interval = "{batched}"')):
        if n not in m:
            continue
        a, b2 = val(n, lambda x: disk_num(x, "steady")), val(n, lambda x: disk_num(x, "outage"))
        ok = None if a is None or b2 is None else max(a, b2) <= 3
        print(f"| disk ≤ 3 B written per sample, {label}: steady / outage | "
              f"{fmt(a, 2)} / {fmt(b2, 2)} | {verdict(ok)} |")
    if "cairn" in m:
        d1 = val("cairn", lambda x: m[x]["wire_drain"]["bytes"] / m[x]["wire_drain"]["samples"])
        d2 = val("cairn", lambda x: bk["sent_bytes"] / bk["sent_samples"])
        ok = None if d1 is None and d2 is None else max(v for v in (d1, d2) if v is not None) <= 5
        print(f"| wire ≤ 5 B per sample while draining: after the outage / the 24 h backlog | "
              f"{fmt(d1, 2)} / {fmt(d2, 2)} | {verdict(ok)} |")
    if bk:
        r1, r2 = mb(bk.get("rss_down")), mb(bk.get("hwm_drain"))
        ok = None if r1 is None else max(r1, r2 or 0) <= 16
        print(f"| RSS ≤ 16 MB with a 24 h backlog: receiver down / peak while draining | "
              f"{fmt(r1, 1)} / {fmt(r2, 1)} MB | {verdict(ok)} |")
        dr = bk.get("drain_rate")
        print(f"| drain ≥ 200k samples/s to a local VictoriaMetrics | {fmt(dr, 0)} | "
              f"{verdict(None if dr is None else dr >= 200000)} |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("proxy")
    p.add_argument("--upstream", required=True)
    p.add_argument("--control", type=int, required=True)
    p.add_argument("--route", action="append", required=True)
    p = sub.add_parser("measure")
    p.add_argument("--agent", action="append", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--out", required=True)
    for k, d in (("warmup", 20), ("steady", 90), ("outage", 60), ("drain-max", 90), ("interval", 1)):
        p.add_argument(f"--{k}", type=float, default=d)
    p = sub.add_parser("backlog-rss")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--wait", type=float, default=8)
    p.add_argument("--fill", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("backlog-drain")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--vm-metrics", required=True)
    p.add_argument("--max", type=float, default=120)
    p.add_argument("--receiver-pidfile", required=True)
    p.add_argument("--receiver-log", required=True)
    p.add_argument("receiver", nargs=argparse.REMAINDER)
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--batched-flush", default="60s")
    args = ap.parse_args()
    {"proxy": cmd_proxy, "measure": cmd_measure, "backlog-rss": cmd_backlog_rss,
     "backlog-drain": cmd_backlog_drain, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
