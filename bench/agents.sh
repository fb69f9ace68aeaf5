#!/usr/bin/env bash
# bench/agents.sh: a benchmark (not a test) of whole agent stacks side by
# side in one run, each writing to its own freshly made ext4 file system on
# a loop device, so what the device really sees (data, file system journal,
# metadata) is counted: /sys/block/loopN/stat sectors written. Run as root
# (losetup, mkfs, mount). Prints one Markdown table.
#
# Stacks, all at the same INTERVAL, each sending to one local
# VictoriaMetrics (its data on the work dir, not on a loop device) through
# its own listener of the counting proxy (bench/remote_write.py proxy):
#   cairn            cairn alone (its own collectors + remote_write), its
#                    WAL the only thing on its device;
#   cairn held       the same with wal.flush_interval = CAIRN_HOLD: records
#                    are held back in a stage on /dev/shm (tmpfs, as /run
#                    is on a real host) and only what is still undelivered
#                    after CAIRN_HOLD is written to the device;
#   vmagent          node_exporter + vmagent scraping it,
#                    -remoteWrite.tmpDataPath on its device;
#   Prometheus agent node_exporter + Prometheus `--enable-feature=agent`,
#                    --storage.agent.path on its device.
# Beside them, on a device of its own, "the floor" (agents.py floor): one
# 4 KiB page rewritten in place and fdatasync'd every CAIRN_HOLD, the least
# any program can make durable once per flush interval; "cairn held"'s
# outage writes are also given beyond it.
# node_exporter runs with its defaults but --no-collector.systemd (no
# systemd here); everyone's queue settings are their defaults.
#
# Phases: WARMUP; STEADY (receiver up); OUTAGE (every listener refuses:
# connection refused, or 503 with OUTAGE_MODE=503); RECOVER (receiver up
# again, until each stack caught up: its last request carrying samples
# from before the receiver returned has arrived, and so has one whose newest
# sample is fresh, i.e. at most 2 intervals old, or its own steady-state lag
# plus half an interval if it batches longer; bounded by RECOVER_MAX). Every file
# system is synced (syncfs) at each phase boundary so what a phase dirtied
# is counted in it (ext4 writes buffered data back up to ~30 s later); this
# writes early, never more than the kernel would write on its own unless
# data is deleted between the boundary and its writeback.
#
# Environment (seconds unless said):
#   INTERVAL=1s (or 15s)  WARMUP=10  STEADY=60  OUTAGE=60  RECOVER_MAX=90
#   OUTAGE_MODE=refuse (or 503)
#   DISK_SIZE=1G          size of each loop device's backing file; below
#                         512M mkfs.ext4 picks 1 KiB blocks (its "small"
#                         type) and every device figure shrinks, unlike a
#                         real card's file system with 4 KiB blocks
#   MOUNT_OPTS=           extra ext4 mount options for every device, e.g.
#                         lazytime (timestamps kept in memory: no journal
#                         transaction just because a write moved mtime)
#   CAIRN_BIN             cairn binary (default target/release/cairn, built
#                         with `nice -n 5 cargo build --release --features
#                         sled` unless SKIP_BUILD=1)
#   CAIRN_FLUSH_INTERVAL  cairn's wal.flush_interval (default: cairn's own)
#   CAIRN_HOLD=10s        "cairn held"'s wal.flush_interval
#   BENCH_DIR=DIR         work dir (default: a new temp dir, removed unless KEEP=1)
#   CAIRN_PROMETHEUS, CAIRN_VICTORIA_METRICS, CAIRN_VMAGENT, CAIRN_NODE_EXPORTER:
#       binaries; else PATH, else target/deps/usr/bin, else /tmp/deps/usr/bin
# Every process, mount and loop device made here is undone on exit, also
# on Ctrl-C or an error; with KEEP=1 the work dir (logs, results.json, the
# backing files) stays.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/bench/agents.py"
PROXY="$ROOT/bench/remote_write.py"
INTERVAL="${INTERVAL:-1s}"
INTERVAL="${INTERVAL%s}"
WARMUP="${WARMUP:-10}"
STEADY="${STEADY:-60}"
OUTAGE="${OUTAGE:-60}"
RECOVER_MAX="${RECOVER_MAX:-90}"
OUTAGE_MODE="${OUTAGE_MODE:-refuse}"
DISK_SIZE="${DISK_SIZE:-1G}"
KEEP="${KEEP:-0}"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$INTERVAL" =~ ^[0-9]+$ ]] || die "INTERVAL must be whole seconds (1s, 15s), not $INTERVAL"
[[ "$OUTAGE_MODE" == refuse || "$OUTAGE_MODE" == 503 ]] || die "OUTAGE_MODE is refuse or 503"
[[ "$(id -u)" == 0 ]] || die "run as root (losetup, mkfs.ext4, mount)"
for c in python3 losetup mkfs.ext4 mount umount truncate sync; do
    command -v "$c" >/dev/null || die "$c is required"
done
find_peers

if [[ -n "${CAIRN_BIN:-}" ]]; then
    CAIRN="$CAIRN_BIN"
else
    CAIRN="$ROOT/target/release/cairn"
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        note "building cairn (release, sled)"
        (cd "$ROOT" && nice -n 5 cargo build --release --features sled --quiet --bin cairn) ||
            die "cargo build --release failed"
    fi
fi
[[ -x "$CAIRN" ]] || die "no $CAIRN (build first, or set CAIRN_BIN)"

if [[ -n "${BENCH_DIR:-}" ]]; then
    W="$BENCH_DIR"
    mkdir -p "$W"
    [[ -z "$(ls -A "$W")" ]] || die "BENCH_DIR $W is not empty"
else
    W="$(mktemp -d "${TMPDIR:-/tmp}/cairn-agents-bench.XXXXXX")"
fi
RESULTS="$W/results.json"

# Mounts and loop devices made here, undone in reverse.
MOUNTS=()
LOOPS=()
cleanup() {
    local i
    trap '' INT TERM
    stop_all
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null ||
            echo "agents.sh: could not unmount ${MOUNTS[$i]}" >&2
    done
    for ((i = ${#LOOPS[@]} - 1; i >= 0; i--)); do
        losetup -d "${LOOPS[$i]}" 2>/dev/null || echo "agents.sh: could not detach ${LOOPS[$i]}" >&2
    done
    [[ -n "${STAGE:-}" ]] && rm -rf "$STAGE"
    if [[ "$KEEP" == 1 ]]; then
        echo "agents.sh: kept $W" >&2
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# make_disk NAME: a DISK_SIZE file, a loop device over it, ext4 with
# mkfs' default options, mounted on $W/mnt/NAME. Sets DEV_OF[NAME] (loopN).
# noinit_itable keeps ext4's lazy inode-table zeroing (a kernel thread
# writing for minutes after the first mount) out of the measurement; it
# changes nothing the stacks do.
declare -A DEV_OF
make_disk() {
    local name="$1" dev
    truncate -s "$DISK_SIZE" "$W/$name.img"
    dev="$(losetup -f --show "$W/$name.img")"
    LOOPS+=("$dev")
    mkfs.ext4 -q "$dev"
    mkdir -p "$W/mnt/$name"
    mount -o "noinit_itable${MOUNT_OPTS:+,$MOUNT_OPTS}" "$dev" "$W/mnt/$name"
    MOUNTS+=("$W/mnt/$name")
    DEV_OF[$name]="$(basename "$dev")"
}

read -r P_VM P_CTL P_R1 P_R2 P_R3 P_NE1 P_NE2 P_PROM P_VMA P_C1 P_R4 P_C2 < <(free_ports 12)
HOLD="${CAIRN_HOLD:-10s}"

note "work dir $W"
for s in cairn held vmagent prometheus floor; do make_disk "$s"; done
STAGE="$(mktemp -d /dev/shm/cairn-bench-stage.XXXXXX)"

start vm "$VM" -storageDataPath="$W/vm" -httpListenAddr="127.0.0.1:$P_VM" -loggerLevel=ERROR
wait_http vm "http://127.0.0.1:$P_VM/health"
start proxy python3 "$PROXY" proxy --upstream "http://127.0.0.1:$P_VM/api/v1/write" \
    --control "$P_CTL" --route "cairn=$P_R1" --route "held=$P_R4" --route "vmagent=$P_R2" --route "prometheus=$P_R3"
wait_http proxy "http://127.0.0.1:$P_CTL/ping"

start ne_vma "$NE" --web.listen-address="127.0.0.1:$P_NE1" --no-collector.systemd
start ne_prom "$NE" --web.listen-address="127.0.0.1:$P_NE2" --no-collector.systemd
wait_http ne_vma "http://127.0.0.1:$P_NE1/metrics"
wait_http ne_prom "http://127.0.0.1:$P_NE2/metrics"

scrape_config "$W/prometheus.yml" "$INTERVAL" "$P_NE2" "http://127.0.0.1:$P_R3/api/v1/write"
scrape_config "$W/vmagent.yml" "$INTERVAL" "$P_NE1"
cairn_config "$W/cairn.toml" "$P_C1" "$W/mnt/cairn/wal" "http://127.0.0.1:$P_R1/api/v1/write" \
    "${INTERVAL}s" "${CAIRN_FLUSH_INTERVAL:-0s}" 30s

cairn_config "$W/held.toml" "$P_C2" "$W/mnt/held/wal" "http://127.0.0.1:$P_R4/api/v1/write" \
    "${INTERVAL}s" "$HOLD" 30s "$STAGE"

HOLD_S="${HOLD%s}"
[[ "$HOLD_S" =~ ^[0-9]+$ ]] || die "CAIRN_HOLD must be whole seconds (10s, 60s), not $HOLD"
start floor python3 "$HELPER" floor --file "$W/mnt/floor/page" --every "$HOLD_S"
start cairn "$CAIRN" --config "$W/cairn.toml"
start held "$CAIRN" --config "$W/held.toml"
start vmagent "$VMAGENT" -promscrape.config="$W/vmagent.yml" \
    -remoteWrite.url="http://127.0.0.1:$P_R2/api/v1/write" -remoteWrite.tmpDataPath="$W/mnt/vmagent/data" \
    -httpListenAddr="127.0.0.1:$P_VMA" -loggerLevel=WARN
start prometheus "$PROMETHEUS" --enable-feature=agent --config.file="$W/prometheus.yml" \
    --storage.agent.path="$W/mnt/prometheus/agent" --web.listen-address="127.0.0.1:$P_PROM" --log.level=warn
wait_http cairn "http://127.0.0.1:$P_C1/-/ready"
wait_http held "http://127.0.0.1:$P_C2/-/ready"
wait_http vmagent "http://127.0.0.1:$P_VMA/metrics"
wait_http prometheus "http://127.0.0.1:$P_PROM/-/ready"

echo "## Agent stacks on their own loop devices: device writes, wire, RSS, CPU, recovery"
echo
echo "- host: $(uname -srm), $(nproc) CPUs, shared with other builds during the run (CPU and timing figures are noisy);" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- devices: one $DISK_SIZE loop device per stack, ext4 (mkfs.ext4 defaults: $(stat -f -c %S "$W/mnt/cairn")-byte blocks; mount options: ${MOUNT_OPTS:-defaults})," \
    "holding only that stack's data dir;" \
    "bytes = sectors written (/sys/block/loopN/stat) x 512, file systems synced at each phase boundary"
echo "- cairn: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown) ($CAIRN, default collectors," \
    "wal.flush_interval ${CAIRN_FLUSH_INTERVAL:-default}; cairn held: wal.flush_interval $HOLD, stage on /dev/shm)"
echo "- $(version "$PROMETHEUS" --version) (agent mode); node_exporter: $(version "$NE" --version) (--no-collector.systemd);" \
    "vmagent / victoria-metrics: $(deb_of "$VM" victoria-metrics)"
echo "- interval ${INTERVAL} s for everyone; WARMUP ${WARMUP} s, STEADY ${STEADY} s, OUTAGE ${OUTAGE} s" \
    "(receiver: $([[ "$OUTAGE_MODE" == 503 ]] && echo "503" || echo "connection refused")), RECOVER up to ${RECOVER_MAX} s"
echo

python3 "$HELPER" measure --control "http://127.0.0.1:$P_CTL" --out "$RESULTS" --outage-mode "$OUTAGE_MODE" \
    --floor "floor,${DEV_OF[floor]},$W/mnt/floor,${PID_OF[floor]}" --floor-every "$HOLD_S" \
    --interval "$INTERVAL" --warmup "$WARMUP" --steady "$STEADY" --outage "$OUTAGE" --recover-max "$RECOVER_MAX" \
    --stack "cairn,cairn,${PID_OF[cairn]},http://127.0.0.1:$P_C1/metrics,cairn,${DEV_OF[cairn]},$W/mnt/cairn,${PID_OF[cairn]}" \
    --stack "cairn held,cairn,${PID_OF[held]},http://127.0.0.1:$P_C2/metrics,held,${DEV_OF[held]},$W/mnt/held,${PID_OF[held]}" \
    --stack "vmagent,vmagent,${PID_OF[vmagent]},http://127.0.0.1:$P_VMA/metrics,vmagent,${DEV_OF[vmagent]},$W/mnt/vmagent,${PID_OF[vmagent]}:${PID_OF[ne_vma]}" \
    --stack "Prometheus agent,prometheus,${PID_OF[prometheus]},http://127.0.0.1:$P_PROM/metrics,prometheus,${DEV_OF[prometheus]},$W/mnt/prometheus,${PID_OF[prometheus]}:${PID_OF[ne_prom]}"

python3 "$HELPER" report --out "$RESULTS"
echo
echo "Whole stack = the agent plus, for vmagent and Prometheus, its own node_exporter (cairn is its own exporter)."
echo "Device bytes per sample divide the device's writes in the phase by the samples the stack collected in it."
echo "Outage samples delivered: samples timestamped in the outage that reached the receiver, of those collected in it"
echo "(± one collection at the edges). Wire bytes are request bodies at the proxy, metadata-only requests included."
