#!/usr/bin/env bash
# bench/compare.sh: a benchmark (not a test) of cairn against node_exporter
# 1.5.0 on this host, with the same collector set, in one run.
#
# Builds cairn in release mode, starts both on free loopback ports, scrapes
# each WARMUP times, then SCRAPES times alternating (gzip, like Prometheus),
# and prints a Markdown table: RSS after the run, CPU time per scrape, scrape
# latency median / p90, series count, uncompressed response size, and the
# cairn/node_exporter ratios. Both processes are killed (by pid) on exit.
#
# Environment:
#   COLLECTORS="cpu meminfo ..."  collectors to enable in both (default below)
#   SCRAPES=200                   measured scrapes per exporter
#   WARMUP=20                     unmeasured scrapes per exporter first
#   NODE_EXPORTER=/path/to/node_exporter-1.5.0
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COLLECTORS="${COLLECTORS:-cpu meminfo loadavg stat uname time os diskstats netdev filesystem}"
SCRAPES="${SCRAPES:-200}"
WARMUP="${WARMUP:-20}"

die() { echo "compare.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
command -v cargo >/dev/null || die "cargo is required"

NE="${NODE_EXPORTER:-}"
if [[ -z "$NE" ]]; then
    NE="$(command -v prometheus-node-exporter || true)"
fi
if [[ -z "$NE" && -x /tmp/deps/usr/bin/prometheus-node-exporter ]]; then
    NE=/tmp/deps/usr/bin/prometheus-node-exporter
fi
if [[ -z "$NE" || ! -x "$NE" ]]; then
    cat >&2 <<'HELP'
compare.sh: node_exporter 1.5.0 not found. Set NODE_EXPORTER=/path/to/binary, or
fetch Debian's build without installing it:
    mkdir -p /tmp/deps && cd /tmp/deps
    apt-get download prometheus-node-exporter
    dpkg-deb -x prometheus-node-exporter_*.deb /tmp/deps
(the binary is then /tmp/deps/usr/bin/prometheus-node-exporter)
HELP
    exit 1
fi

echo "building cairn (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
CAIRN="$ROOT/target/release/cairn"
[[ -x "$CAIRN" ]] || die "no $CAIRN after the build"

# Two distinct free loopback ports (both sockets held open while choosing).
read -r P1 P2 < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

FLAGS=(--collector.disable-defaults)
for c in $COLLECTORS; do FLAGS+=("--collector.$c"); done
# node_exporter gets upstream master's default filters, which cairn uses by default.
NE_FILTERS=(
    "--collector.netdev.device-exclude="
    '--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)'
    '--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$'
)

LOGDIR="$(mktemp -d)"
CAIRN_PID=""
NE_PID=""
cleanup() {
    for pid in $CAIRN_PID $NE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $CAIRN_PID $NE_PID; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$CAIRN" --web.listen-address "127.0.0.1:$P1" "${FLAGS[@]}" >"$LOGDIR/cairn.log" 2>&1 &
CAIRN_PID=$!
"$NE" --web.listen-address="127.0.0.1:$P2" "${FLAGS[@]}" "${NE_FILTERS[@]}" >"$LOGDIR/ne.log" 2>&1 &
NE_PID=$!

wait_up() { # name pid port log
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$1 exited at startup"; }
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$3/metrics', timeout=2).read()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$4" >&2
    die "$1 did not answer on 127.0.0.1:$3"
}
wait_up cairn "$CAIRN_PID" "$P1" "$LOGDIR/cairn.log"
wait_up node_exporter "$NE_PID" "$P2" "$LOGDIR/ne.log"

echo "## cairn vs node_exporter"
echo
echo "- host: $(uname -srm), $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- cairn: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown) (target/release/cairn)"
echo "- node_exporter: $("$NE" --version 2>&1 | head -n 1) ($NE)"
echo "- collectors: $COLLECTORS"
echo "- $WARMUP warm-up + $SCRAPES measured scrapes each, alternating, Accept-Encoding: gzip"
echo

python3 "$ROOT/bench/compare.py" \
    --scrapes "$SCRAPES" --warmup "$WARMUP" \
    --target "cairn,$CAIRN_PID,http://127.0.0.1:$P1/metrics" \
    --target "node_exporter,$NE_PID,http://127.0.0.1:$P2/metrics"

if grep -qiE 'level=(error|warn)|WARN|ERROR' "$LOGDIR/cairn.log" "$LOGDIR/ne.log"; then
    echo
    echo "Warnings/errors logged during the run (first 10):"
    grep -hiE 'level=(error|warn)|WARN|ERROR' "$LOGDIR/cairn.log" "$LOGDIR/ne.log" | head -n 10 | sed 's/^/    /'
fi
