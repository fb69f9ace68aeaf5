#!/usr/bin/env bash
# bench/recovery.sh: a benchmark (not a test) of how fast cairn drains its
# backlog once a receiver returns. For each cairn binary given (default:
# target/release/cairn), RUNS times: a fresh local victoria-metrics and a
# fresh cairn (default collectors, INTERVAL s, default queue_config but
# batch_send_deadline = "1s", so "caught up" is unambiguous), a warm-up
# until delivery works, then the receiver is stopped for OUTAGE s and
# started again. Measured: from the receiver answering /health to cairn's
# own cairn_remote_write_oldest_unsent_sample_age_seconds falling under
# CAUGHT_UP s (the batch deadline plus two intervals). Also printed:
# cairn_remote_write_probes_total at the end of the outage (absent in
# builds without probing).
#
# Prints one Markdown table row per run and the median per binary. The
# machine may be shared with builds: times can only come out longer.
#
# Usage: bench/recovery.sh [CAIRN_BIN ...]
# Environment (seconds): OUTAGE=60 RUNS=3 INTERVAL=1 WARMUP=10 CAUGHT_UP=3
#   DRAIN_MAX=120  CAIRN_VICTORIA_METRICS (else PATH, else
#   /work/deps/usr/bin/victoria-metrics)  KEEP=1 keeps the temp dirs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTAGE="${OUTAGE:-60}"
RUNS="${RUNS:-3}"
INTERVAL="${INTERVAL:-1}"
WARMUP="${WARMUP:-10}"
CAUGHT_UP="${CAUGHT_UP:-3}"
DRAIN_MAX="${DRAIN_MAX:-120}"
KEEP="${KEEP:-0}"
VM="${CAIRN_VICTORIA_METRICS:-$(command -v victoria-metrics || echo /work/deps/usr/bin/victoria-metrics)}"
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/cairn")

PIDS=()
DIRS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    if [ "$KEEP" != 1 ]; then
        for d in "${DIRS[@]:-}"; do
            [ -n "$d" ] && rm -rf "$d"
        done
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# metric URL NAME: the value of NAME{remote="vm"} on cairn's /metrics, or "".
metric() {
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
url, name = sys.argv[1], sys.argv[2]
try:
    text = urllib.request.urlopen(url, timeout=2).read().decode()
except Exception:
    sys.exit(0)
for line in text.splitlines():
    if line.startswith(name + '{') and 'remote="vm"' in line:
        print(line.rsplit(' ', 1)[1])
        break
EOF
}

# wait_http URL SECONDS: until URL answers 200; prints the time it did.
wait_http() {
    python3 - "$1" "$2" <<'EOF'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            print(f"{time.time():.3f}")
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit(1)
EOF
}

# wait_caught_up METRICS_URL SECONDS: until the oldest unsent sample is
# younger than CAUGHT_UP; prints the time it was.
wait_caught_up() {
    python3 - "$1" "$2" "$CAUGHT_UP" <<'EOF'
import sys, time, urllib.request
url, limit, thr = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
name = "cairn_remote_write_oldest_unsent_sample_age_seconds"
end = time.time() + limit
while time.time() < end:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
        for line in text.splitlines():
            if line.startswith(name + '{') and 'remote="vm"' in line:
                if float(line.rsplit(' ', 1)[1]) < thr:
                    print(f"{time.time():.3f}")
                    sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

start_vm() { # DIR PORT
    "$VM" -httpListenAddr="127.0.0.1:$2" -storageDataPath="$1/vm" >>"$1/vm.log" 2>&1 &
    VM_PID=$!
    PIDS+=("$VM_PID")
}

echo "| cairn | run | outage s | probes in outage | caught up after receiver up (s) |"
echo "|---|---|---|---|---|"
for bin in "${BINS[@]}"; do
    results=()
    for run in $(seq 1 "$RUNS"); do
        dir="$(mktemp -d /tmp/cairn-recovery.XXXXXX)"
        DIRS+=("$dir")
        vm_port="$(free_port)"
        port="$(free_port)"
        cat >"$dir/cairn.toml" <<EOF
[global]
scrape_interval = "${INTERVAL}s"
[web]
listen_address = "127.0.0.1:$port"
[wal]
dir = "$dir/wal"
[[remote_write]]
name = "vm"
url = "http://127.0.0.1:$vm_port/api/v1/write"
queue_config = { batch_send_deadline = "1s" }
EOF
        start_vm "$dir" "$vm_port"
        wait_http "http://127.0.0.1:$vm_port/health" 60 >/dev/null
        "$bin" --config="$dir/cairn.toml" >"$dir/cairn.log" 2>&1 &
        cairn_pid=$!
        PIDS+=("$cairn_pid")
        wait_http "http://127.0.0.1:$port/-/ready" 60 >/dev/null
        sleep "$WARMUP"
        wait_caught_up "http://127.0.0.1:$port/metrics" 60 >/dev/null
        kill "$VM_PID"
        wait "$VM_PID" 2>/dev/null || true
        sleep "$OUTAGE"
        probes="$(metric "http://127.0.0.1:$port/metrics" cairn_remote_write_probes_total)"
        start_vm "$dir" "$vm_port"
        t_up="$(wait_http "http://127.0.0.1:$vm_port/health" 60)"
        if t_done="$(wait_caught_up "http://127.0.0.1:$port/metrics" "$DRAIN_MAX")"; then
            took="$(python3 -c "print(f'{$t_done - $t_up:.1f}')")"
        else
            took="> $DRAIN_MAX"
        fi
        results+=("$took")
        echo "| $bin | $run | $OUTAGE | ${probes:--} | $took |"
        kill "$cairn_pid" "$VM_PID" 2>/dev/null || true
        wait "$cairn_pid" "$VM_PID" 2>/dev/null || true
    done
    median="$(printf '%s\n' "${results[@]}" | python3 -c 'import sys,statistics
v=[float(x) for x in sys.stdin.read().split() if x.replace(".","",1).isdigit()]
print(f"{statistics.median(v):.1f}" if v else "-")')"
    echo "| $bin | median | $OUTAGE | | $median |"
done
