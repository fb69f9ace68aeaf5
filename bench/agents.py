#!/usr/bin/env python3
"""Helper of bench/agents.sh (stdlib only); not meant to be run alone.

Subcommands:
  measure  warm-up, steady state (receiver up), outage (receiver down),
           recovery (receiver up again, until every stack caught up or
           --recover-max); at each phase boundary every stack's file system
           is synced (syncfs) and its loop device's sectors written, its
           processes' CPU and RSS and its agent's own counters are read.
  report   one Markdown table, from the JSON `measure` wrote.
  floor    the least any program can make durable once per flush interval:
           one 4 KiB page rewritten in place in a file whose blocks are
           already written, then fdatasync, every --every seconds. Run by
           agents.sh on a loop device of its own, beside the stacks, so the
           file system's own price of one durable write (the journal
           transaction a write's mtime change costs) is measured in the same
           run as what the stacks pay.

The counting proxy (and the decoding of request bodies) is the one of
bench/remote_write.py, started by agents.sh as `remote_write.py proxy`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# No bench/__pycache__ left in the work tree by the import below.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import remote_write as rw  # noqa: E402  (the proxy, counters, /proc readers)

SECTOR = 512  # /sys/block/*/stat counts 512-byte sectors whatever the device


def sectors_written(dev):
    """Field 7 of /sys/block/DEV/stat: sectors written since the device appeared."""
    with open(f"/sys/block/{dev}/stat") as f:
        return int(f.read().split()[6])


def journal_commits(dev):
    """Transactions the ext4 journal (jbd2) of DEV committed since mount: the
    first number of /proc/fs/jbd2/DEV-INODE/info. Each one writes at least a
    descriptor, the blocks it logs and a commit block."""
    base = "/proc/fs/jbd2"
    for d in os.listdir(base):
        if d.rsplit("-", 1)[0] == dev:
            with open(f"{base}/{d}/info") as f:
                return int(f.read().split()[0])
    return None


class Stack:
    """One agent stack: its agent (counters, main pid) as remote_write.Agent
    sees it, every pid of the stack, its loop device and mount point.

    Spec: name,kind,agent_pid,metrics_url,route,loop_dev,mount,pid[:pid...]"""

    def __init__(self, spec):
        f = spec.split(",")
        self.name, self.kind, self.route, self.dev, self.mount = f[0], f[1], f[4], f[5], f[6]
        self.pids = [int(p) for p in f[7].split(":")]
        self.agent = rw.Agent(",".join(f[:5]))

    def snapshot(self):
        # Sync first, so what the phase dirtied is counted in the phase:
        # left alone, ext4 writes buffered data back up to ~30 s later.
        subprocess.run(["sync", "-f", self.mount], check=True)
        s = self.agent.snapshot()
        s["sectors"] = sectors_written(self.dev)
        s["journal"] = journal_commits(self.dev)
        s["stack_cpu"] = sum(rw.proc_cpu(p) for p in self.pids)
        s["stack_rss"] = sum(rw.proc_mem(p)["VmRSS"] for p in self.pids)
        if self.kind == "cairn":
            # What cairn's status page and `cairn wal status` report.
            base = self.agent.url.rsplit("/", 1)[0]
            wal = json.loads(rw.fetch(base + "/status.json")).get("wal") or {}
            s["status_written"] = wal.get("disk_bytes_written")
        return s


class Floor:
    """The floor writer (`floor` below) on its own device.

    Spec: name,loop_dev,mount,pid"""

    def __init__(self, spec):
        self.name, self.dev, self.mount, pid = spec.split(",")
        self.pid = int(pid)

    def snapshot(self):
        subprocess.run(["sync", "-f", self.mount], check=True)
        # The page holds the number of durable writes made so far.
        with open(os.path.join(self.mount, "page"), "rb") as f:
            writes = int.from_bytes(f.read(8), "little")
        return {"t": time.time(), "sectors": sectors_written(self.dev),
                "journal": journal_commits(self.dev), "writes": writes}


def cmd_floor(args):
    page = 4096
    fd = os.open(args.file, os.O_RDWR | os.O_CREAT, 0o644)
    # Written (not just allocated) and synced first, as cairn's zeroed tail
    # is: the rewrite below changes no block map and no file size.
    os.pwrite(fd, b"\0" * (16 * page), 0)
    os.fsync(fd)
    n = 0
    while True:
        time.sleep(args.every)
        n += 1
        os.pwrite(fd, n.to_bytes(8, "little") * (page // 8), 0)
        os.fdatasync(fd)


def oldest_ts(rec):
    return min(int(k) for k in rec["ts"]) / 1000 if rec["ts"] else None


def newest_ts(rec):
    return max(int(k) for k in rec["ts"]) / 1000 if rec["ts"] else None


def accepted(recs, route):
    return [r for r in recs if r["route"] == route and 200 <= r["status"] < 300 and r["samples"]]


def recovery(recs, route, t_up, fresh_within):
    """(seconds after t_up the stack caught up, or None; arrival of its last
    backlog request). Backlog: a request carrying samples timestamped before
    the receiver came back. Caught up: the last backlog request arrived and
    a request carrying a sample at most `fresh_within` seconds older than its
    arrival did too (an agent sending from several queues at once, as
    vmagent does, may send fresh samples before the last of its backlog)."""
    after = [r for r in accepted(recs, route) if r["t"] >= t_up]
    last_backlog = max((r["t"] for r in after if oldest_ts(r) < t_up), default=None)
    fresh = [r["t"] for r in after if r["t"] - newest_ts(r) <= fresh_within]
    if not fresh:
        return None, last_backlog
    return max(min(fresh), last_backlog or t_up) - t_up, last_backlog


def cmd_measure(args):
    stacks = [Stack(s) for s in args.stack]
    floor = Floor(args.floor) if args.floor else None
    ctl = args.control
    res = {"config": {"interval": args.interval, "warmup": args.warmup, "steady": args.steady,
                      "outage": args.outage, "recover_max": args.recover_max,
                      "outage_mode": args.outage_mode},
           "stacks": {s.name: {"kind": s.kind, "pids": len(s.pids)} for s in stacks}}

    started = time.time()
    rw.log("waiting for every stack to deliver a first request (max 60 s)")
    deadline = started + 60
    while True:
        recs = rw.control(ctl, "/log")["records"]
        seen = {r["route"] for r in recs if 200 <= r["status"] < 300}
        missing = [s.name for s in stacks if s.route not in seen]
        if not missing:
            break
        if time.time() > deadline:
            sys.exit(f"agents.py: no request from {', '.join(missing)} within 60 s")
        time.sleep(1)
    rest = args.warmup - (time.time() - started)
    rw.log(f"warm-up: {max(0, rest):.0f} s more")
    time.sleep(max(0, rest))

    snaps = {s.name: [] for s in stacks}

    floor_snaps = []

    def snap_all():
        for s in stacks:
            snaps[s.name].append(s.snapshot())
        if floor:
            floor_snaps.append(floor.snapshot())

    rw.log(f"STEADY {args.steady:g} s (receiver up)")
    snap_all()
    time.sleep(args.steady)
    snap_all()
    mode = "?mode=503" if args.outage_mode == "503" else ""
    t_down = rw.control(ctl, "/down" + mode)["t"]
    rw.log(f"OUTAGE {args.outage:g} s (receiver down: "
           f"{'503' if mode else 'connection refused'})")
    time.sleep(args.outage)
    snap_all()
    t_up = rw.control(ctl, "/up")["t"]
    rw.log(f"RECOVER: receiver up; waiting for every stack to catch up (max {args.recover_max:g} s)")

    # How old the newest sample of a steady-state request is when it
    # arrives: an agent that batches (cairn at a 1 s interval waits for
    # max_samples_per_send or batch_send_deadline) is "fresh" within its
    # own steady lag, not within 2 intervals.
    recs = rw.control(ctl, "/log")["records"]
    fresh_within = {}
    for s in stacks:
        lags = sorted(r["t"] - newest_ts(r) for r in accepted(recs, s.route)
                      if snaps[s.name][0]["t"] <= r["t"] < snaps[s.name][1]["t"])
        p95 = lags[int(0.95 * (len(lags) - 1))] if lags else 0
        fresh_within[s.name] = max(2 * args.interval, p95 + args.interval / 2)

    quiet = max(3, 2 * args.interval)
    done = set()
    while len(done) < len(stacks) and time.time() < t_up + args.recover_max:
        time.sleep(1)
        recs = rw.control(ctl, "/log")["records"]
        now = time.time()
        for s in stacks:
            if s.name in done:
                continue
            caught, last_backlog = recovery(recs, s.route, t_up, fresh_within[s.name])
            if caught is not None and now - (last_backlog or t_up) >= quiet:
                done.add(s.name)
                rw.log(f"  {s.name} caught up {caught:.1f} s after recovery")
    snap_all()
    recs = rw.control(ctl, "/log")["records"]
    with open(args.out + ".requests.json", "w") as f:
        json.dump(recs, f)

    out = {}
    for s in stacks:
        s0, s1, s2, s3 = snaps[s.name]
        st = {"fresh_within": fresh_within[s.name]}
        for k, (x, y) in {"steady": (s0, s1), "outage": (s1, s2), "recover": (s2, s3)}.items():
            st[f"{k}_s"] = y["t"] - x["t"]
            st[f"{k}_device"] = (y["sectors"] - x["sectors"]) * SECTOR
            st[f"{k}_collected"] = y["collected"] - x["collected"]
            st[f"{k}_cpu"] = y["stack_cpu"] - x["stack_cpu"]
            st[f"{k}_journal"] = (None if x["journal"] is None or y["journal"] is None
                                  else y["journal"] - x["journal"])
            # What the agent itself counts as written (/proc/PID/io
            # write_bytes: cairn's status page and `cairn wal status`
            # report this one), to hold beside what the device saw.
            st[f"{k}_own_write_bytes"] = y["io"]["write_bytes"] - x["io"]["write_bytes"]
            st[f"{k}_status_written"] = (None if x.get("status_written") is None
                                         else y["status_written"] - x["status_written"])
        st["series_per_collection"] = st["steady_collected"] / max(1, s1["scrapes"] - s0["scrapes"])
        st["rss_steady"] = s1["stack_rss"]
        st["rss_outage"] = s2["stack_rss"]
        b, n, q = rw.samples_between(recs, s.route, s0["t"], s1["t"])
        st["wire_steady"] = {"bytes": b, "samples": n, "requests": q}
        _, got, _ = rw.samples_between(recs, s.route, 0, s3["t"] + 1, t_down, t_up)
        st["outage_delivered"] = got
        st["outage_expected"] = st["outage_collected"]
        caught, _ = recovery(recs, s.route, t_up, fresh_within[s.name])
        st["recovery_s"] = caught
        st["first_after_up"] = min((r["t"] - t_up for r in accepted(recs, s.route) if r["t"] >= t_up),
                                   default=None)
        out[s.name] = st
    res["stacks_measured"] = out
    if floor:
        f = {"name": floor.name, "every": args.floor_every}
        for i, k in enumerate(("steady", "outage", "recover")):
            x, y = floor_snaps[i], floor_snaps[i + 1]
            f[f"{k}_s"] = y["t"] - x["t"]
            f[f"{k}_writes"] = y["writes"] - x["writes"]
            f[f"{k}_device"] = (y["sectors"] - x["sectors"]) * SECTOR
            f[f"{k}_journal"] = (None if x["journal"] is None or y["journal"] is None
                                 else y["journal"] - x["journal"])
        res["floor"] = f
    res["times"] = {"t_down": t_down, "t_up": t_up}
    rw.save(args.out, res)
    rw.log("measured")


def cmd_report(args):
    res = rw.load(args.out)
    m = res["stacks_measured"]
    cfg = res["config"]
    names = list(m)
    fmt, per = rw.fmt, rw.per

    def row(label, cells):
        print(f"| {label} | " + " | ".join(cells) + " |")

    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    row("samples per collection", [fmt(m[n]["series_per_collection"], 0) for n in names])
    row("RSS, whole stack, end of STEADY (MiB)", [fmt(m[n]["rss_steady"] / 2**20, 1) for n in names])
    row("RSS, whole stack, end of OUTAGE (MiB)", [fmt(m[n]["rss_outage"] / 2**20, 1) for n in names])
    row("CPU per 1,000 samples, whole stack, STEADY (ms)",
        [per(1e6 * m[n]["steady_cpu"], m[n]["steady_collected"]) for n in names])
    row("wire bytes per sample, STEADY",
        [per(m[n]["wire_steady"]["bytes"], m[n]["wire_steady"]["samples"]) for n in names])
    row("**device bytes per sample, STEADY**",
        [per(m[n]["steady_device"], m[n]["steady_collected"]) for n in names])
    row("**device bytes per sample, OUTAGE**",
        [per(m[n]["outage_device"], m[n]["outage_collected"]) for n in names])
    row("device KiB written, STEADY / OUTAGE / RECOVER",
        [f"{m[n]['steady_device'] / 1024:,.0f} / {m[n]['outage_device'] / 1024:,.0f} / "
         f"{m[n]['recover_device'] / 1024:,.0f}" for n in names])
    row("journal commits (jbd2 transactions), STEADY / OUTAGE / RECOVER",
        [" / ".join(fmt(m[n].get(f"{k}_journal"), 0) for k in ("steady", "outage", "recover"))
         for n in names])
    row("the agent's own count of bytes written per sample, STEADY / OUTAGE (/proc/PID/io write_bytes)",
        [f"{per(m[n]['steady_own_write_bytes'], m[n]['steady_collected'])} / "
         f"{per(m[n]['outage_own_write_bytes'], m[n]['outage_collected'])}" for n in names])
    row("cairn's status page: disk bytes written per sample, STEADY / OUTAGE (the WAL's count of blocks)",
        [f"{per(m[n]['steady_status_written'], m[n]['steady_collected'])} / "
         f"{per(m[n]['outage_status_written'], m[n]['outage_collected'])}"
         if m[n].get("steady_status_written") is not None else "" for n in names])
    row("outage samples delivered",
        [f"{m[n]['outage_delivered']:,} / {m[n]['outage_expected']:,.0f} "
         f"({100 * m[n]['outage_delivered'] / max(1, m[n]['outage_expected']):.1f} %)" for n in names])
    row("first request accepted after the receiver returned (s)",
        [fmt(m[n]["first_after_up"], 1) for n in names])
    row("**recovery: backlog caught up (s)**",
        [fmt(m[n]["recovery_s"], 1) if m[n]["recovery_s"] is not None
         else f"> {cfg['recover_max']:g}" for n in names])
    row("… \"fresh\" threshold used (s)", [fmt(m[n]["fresh_within"], 1) for n in names])
    f = res.get("floor")
    if f:
        every = f["every"]
        print()
        print(f"The floor: one 4 KiB page rewritten in place and fdatasync'd every {every:g} s (`agents.py floor`),")
        print("on its own device in the same run: what the file system charges for one durable write per")
        print("flush interval, whoever makes it.")
        print()
        print("| | STEADY | OUTAGE | RECOVER |")
        print("|---|---:|---:|---:|")
        ks = ("steady", "outage", "recover")
        print("| floor: device KiB written | " + " | ".join(f"{f[k + '_device'] / 1024:,.0f}" for k in ks) + " |")
        print("| floor: journal commits | " + " | ".join(fmt(f[k + "_journal"], 0) for k in ks) + " |")
        print("| floor: durable writes | " + " | ".join(str(f[k + "_writes"]) for k in ks) + " |")
        print("| floor: device KiB per durable write | " + " | ".join(
            per(f[k + "_device"] / 1024, f[k + "_writes"], 1) for k in ks) + " |")
        print()
        print("Held stacks' OUTAGE device bytes beyond the floor's, per sample (the issue's aim: at most 3):")
        print()
        for n in names:
            if "held" in n:
                extra = m[n]["outage_device"] - f["outage_device"]
                print(f"- {n}: ({m[n]['outage_device']:,} - {f['outage_device']:,}) B / "
                      f"{m[n]['outage_collected']:,.0f} samples = "
                      f"{per(extra, m[n]['outage_collected'])} B/sample")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("measure")
    p.add_argument("--stack", action="append", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--outage-mode", choices=("refuse", "503"), default="refuse")
    p.add_argument("--floor", help="name,loop_dev,mount,pid of the floor writer")
    p.add_argument("--floor-every", type=float, default=10)
    for k, d in (("interval", 1), ("warmup", 10), ("steady", 60), ("outage", 60), ("recover-max", 90)):
        p.add_argument(f"--{k}", type=float, default=d)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p = sub.add_parser("floor")
    p.add_argument("--file", required=True)
    p.add_argument("--every", type=float, required=True)
    args = ap.parse_args()
    {"measure": cmd_measure, "report": cmd_report, "floor": cmd_floor}[args.cmd](args)


if __name__ == "__main__":
    main()
