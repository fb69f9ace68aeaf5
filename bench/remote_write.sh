#!/usr/bin/env bash
# bench/remote_write.sh: a benchmark (not a test) of cairn's WAL and
# remote_write sender side by side with Prometheus 2.42 in agent mode and
# vmagent, in one run, all on 127.0.0.1. Prints one Markdown table per
# measurement against the remote_write aims (RSS, CPU, wire bytes, recovery).
#
# Same scrape interval for everyone (INTERVAL, default 1 s instead of the
# real 15 s, to compress time: per-sample numbers carry over, per-second
# costs are 15x a real deployment's). Prometheus (agent mode) and vmagent
# each scrape their own Debian node_exporter 1.5.0 (default collectors,
# --no-collector.systemd); cairn collects itself with its defaults, three
# times: with the default wal.flush_interval = "0s", with BATCHED_FLUSH, and
# (for reference) at the real REAL_INTERVAL, since its batching per request
# and its acks depend on how many collections fit in batch_send_deadline.
# Everyone sends to one local victoria-metrics through a counting proxy
# (bench/remote_write.py: one listener per agent, request bodies and the
# samples in them decoded and counted; "down" closes the listeners).
#
# Phases: warm-up; steady state (receiver up); outage (receiver down);
# drain (receiver up until every agent delivered its outage). Then a
# synthetic 24 h backlog (examples/fill_wal.rs: 5760 collections at 15 s of
# node_exporter's series, through cairn's own WAL and block code) is given
# to a fresh cairn with its receiver down (RSS), then a fresh
# victoria-metrics comes up (drain throughput: timed on cairn's writes,
# completion confirmed by the receiver's row counter). About 4-5 minutes
# with the defaults. Every process is started here and stopped by pid on
# exit.
#
# Environment (seconds unless said):
#   INTERVAL=1  WARMUP=20  STEADY=90  OUTAGE=60  DRAIN_MAX=90
#   BATCHED_FLUSH=60s                 wal.flush_interval of the second cairn
#                                     (collections held in a stage on /dev/shm)
#   REAL_INTERVAL=15                  interval of a third cairn (the real one),
#                                     for the per-sample numbers it changes
#   BACKLOG_COLLECTIONS=5760  BACKLOG_INTERVAL_MS=15000
#   BACKLOG_SERIES=fixture            fixture (node_exporter 1.5.0 scrape in
#                                     tests/fixtures/remote_write), live
#                                     (`cairn collect --once`), or a file
#   BACKLOG_DOWN=8  BACKLOG_DRAIN_MAX=120
#   BENCH_DIR=DIR  (default: a new temp dir, removed unless KEEP=1)
#   SKIP_BUILD=1   (use target/release as it is)
#   CAIRN_PROMETHEUS, CAIRN_VICTORIA_METRICS, CAIRN_VMAGENT, CAIRN_NODE_EXPORTER:
#       binaries; else PATH, else target/deps/usr/bin, else /tmp/deps/usr/bin
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/bench/remote_write.py"
INTERVAL="${INTERVAL:-1}"
WARMUP="${WARMUP:-20}"
STEADY="${STEADY:-90}"
OUTAGE="${OUTAGE:-60}"
DRAIN_MAX="${DRAIN_MAX:-90}"
BATCHED_FLUSH="${BATCHED_FLUSH:-60s}"
REAL_INTERVAL="${REAL_INTERVAL:-15}"
BACKLOG_COLLECTIONS="${BACKLOG_COLLECTIONS:-5760}"
BACKLOG_INTERVAL_MS="${BACKLOG_INTERVAL_MS:-15000}"
BACKLOG_SERIES="${BACKLOG_SERIES:-fixture}"
BACKLOG_DOWN="${BACKLOG_DOWN:-8}"
BACKLOG_DRAIN_MAX="${BACKLOG_DRAIN_MAX:-120}"
KEEP="${KEEP:-0}"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
command -v python3 >/dev/null || die "python3 is required"
command -v cargo >/dev/null || die "cargo is required"
find_peers

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    note "building cairn and examples/fill_wal (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin cairn --example fill_wal) ||
        die "cargo build --release failed"
fi
CAIRN="$ROOT/target/release/cairn"
FILL="$ROOT/target/release/examples/fill_wal"
[[ -x "$CAIRN" && -x "$FILL" ]] || die "no $CAIRN or $FILL (build first)"

if [[ -n "${BENCH_DIR:-}" ]]; then
    W="$BENCH_DIR"
    mkdir -p "$W"
    [[ -z "$(ls -A "$W")" ]] || die "BENCH_DIR $W is not empty"
else
    W="$(mktemp -d "${TMPDIR:-/tmp}/cairn-rw-bench.XXXXXX")"
fi
RESULTS="$W/results.json"

cleanup() {
    stop_all
    # The receiver the helper started for the backlog drain.
    if [[ -s "$W/vm2.pid" ]]; then stop_pid "$(cat "$W/vm2.pid")"; fi
    [[ "${STAGE:-}" == /dev/shm/* ]] && rm -rf "$STAGE"
    if [[ "$KEEP" == 1 ]]; then
        echo "remote_write.sh: kept $W" >&2
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r P_VM P_VM2 P_CTL P_R1 P_R2 P_R3 P_R4 P_R5 P_NE1 P_NE2 P_PROM P_VMA P_C1 P_C2 P_C3 P_C4 < <(free_ports 16)

# ---------------------------------------------------------------------------
# Main phase: four agents, one receiver behind the counting proxy.

note "work dir $W"
start vm "$VM" -storageDataPath="$W/vm" -httpListenAddr="127.0.0.1:$P_VM" -loggerLevel=ERROR
wait_http vm "http://127.0.0.1:$P_VM/health"
start proxy python3 "$HELPER" proxy --upstream "http://127.0.0.1:$P_VM/api/v1/write" \
    --control "$P_CTL" --route "cairn=$P_R1" --route "cairn_b=$P_R2" \
    --route "vmagent=$P_R3" --route "prometheus=$P_R4" --route "cairn_s=$P_R5"
wait_http proxy "http://127.0.0.1:$P_CTL/ping"

start ne_prom "$NE" --web.listen-address="127.0.0.1:$P_NE1" --no-collector.systemd
start ne_vma "$NE" --web.listen-address="127.0.0.1:$P_NE2" --no-collector.systemd
wait_http ne_prom "http://127.0.0.1:$P_NE1/metrics"
wait_http ne_vma "http://127.0.0.1:$P_NE2/metrics"

scrape_config "$W/prometheus.yml" "$INTERVAL" "$P_NE1" "http://127.0.0.1:$P_R4/api/v1/write"
scrape_config "$W/vmagent.yml" "$INTERVAL" "$P_NE2"
cairn_config "$W/cairn.toml" "$P_C1" "$W/cairn-wal" "http://127.0.0.1:$P_R1/api/v1/write" "${INTERVAL}s" 0s 5m
# The held cairn's stage on /dev/shm (a tmpfs, as /run is on a real host).
STAGE="$W/stage"
[[ -d /dev/shm ]] && STAGE="$(mktemp -d /dev/shm/cairn-bench-stage.XXXXXX)"
cairn_config "$W/cairn_b.toml" "$P_C2" "$W/cairn_b-wal" "http://127.0.0.1:$P_R2/api/v1/write" "${INTERVAL}s" "$BATCHED_FLUSH" 5m "$STAGE"
cairn_config "$W/cairn_s.toml" "$P_C4" "$W/cairn_s-wal" "http://127.0.0.1:$P_R5/api/v1/write" "${REAL_INTERVAL}s" 0s 5m

start cairn "$CAIRN" --config "$W/cairn.toml"
start cairn_b "$CAIRN" --config "$W/cairn_b.toml"
start cairn_s "$CAIRN" --config "$W/cairn_s.toml"
start prometheus "$PROMETHEUS" --enable-feature=agent --config.file="$W/prometheus.yml" \
    --storage.agent.path="$W/prometheus-agent" --web.listen-address="127.0.0.1:$P_PROM" --log.level=warn
start vmagent "$VMAGENT" -promscrape.config="$W/vmagent.yml" \
    -remoteWrite.url="http://127.0.0.1:$P_R3/api/v1/write" -remoteWrite.tmpDataPath="$W/vmagent-data" \
    -httpListenAddr="127.0.0.1:$P_VMA" -loggerLevel=WARN
wait_http cairn "http://127.0.0.1:$P_C1/-/ready"
wait_http cairn_b "http://127.0.0.1:$P_C2/-/ready"
wait_http cairn_s "http://127.0.0.1:$P_C4/-/ready"
wait_http prometheus "http://127.0.0.1:$P_PROM/-/ready"
wait_http vmagent "http://127.0.0.1:$P_VMA/metrics"

echo "## cairn vs Prometheus agent mode vs vmagent: WAL and remote_write"
echo
echo "- host: $(uname -srm), $(nproc) CPUs, WAL/queue dirs on $(findmnt -no FSTYPE -T "$W" 2>/dev/null || echo '?') ($W); $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- cairn: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown) (target/release, default collectors);" \
    "\`cairn (flush $BATCHED_FLUSH)\`: the same with wal.flush_interval = \"$BATCHED_FLUSH\";" \
    "\`cairn at ${REAL_INTERVAL} s\`: the same at the real interval, for reference"
echo "- $(version "$PROMETHEUS" --version) (agent mode); node_exporter: $(version "$NE" --version) (--no-collector.systemd)"
echo "- vmagent / victoria-metrics: $(deb_of "$VM" victoria-metrics || true) ($VMAGENT, $VM)"
echo "- scrape/collection interval ${INTERVAL} s for everyone (real deployments: 15 s; 1 s compresses time)," \
    "warm-up ${WARMUP} s, steady state ${STEADY} s, outage ${OUTAGE} s (receiver's listeners closed), drain up to ${DRAIN_MAX} s"
echo "- cairn sends external labels job=\"node\", instance=\"127.0.0.1:9100\" (what the scrapers add); all queue settings default"

python3 "$HELPER" measure --control "http://127.0.0.1:$P_CTL" --out "$RESULTS" \
    --warmup "$WARMUP" --steady "$STEADY" --outage "$OUTAGE" --drain-max "$DRAIN_MAX" --interval "$INTERVAL" \
    --agent "cairn,cairn,${PID_OF[cairn]},http://127.0.0.1:$P_C1/metrics,cairn," \
    --agent "cairn (flush $BATCHED_FLUSH),cairn-batched,${PID_OF[cairn_b]},http://127.0.0.1:$P_C2/metrics,cairn_b," \
    --agent "cairn at ${REAL_INTERVAL} s,cairn-real,${PID_OF[cairn_s]},http://127.0.0.1:$P_C4/metrics,cairn_s," \
    --agent "vmagent,vmagent,${PID_OF[vmagent]},http://127.0.0.1:$P_VMA/metrics,vmagent,${PID_OF[ne_vma]}" \
    --agent "Prometheus agent,prometheus,${PID_OF[prometheus]},http://127.0.0.1:$P_PROM/metrics,prometheus,${PID_OF[ne_prom]}"

for n in cairn cairn_b cairn_s vmagent prometheus ne_vma ne_prom proxy vm; do stop "$n"; done

# ---------------------------------------------------------------------------
# Backlog phase: cairn alone on a synthetic 24 h backlog.

case "$BACKLOG_SERIES" in
fixture) SERIES="$ROOT/tests/fixtures/remote_write/node_exporter_1.5.0.txt" ;;
live)
    SERIES="$W/live.txt"
    "$CAIRN" collect --once >"$SERIES" 2>/dev/null
    ;;
*) SERIES="$BACKLOG_SERIES" ;;
esac
note "filling a WAL with $BACKLOG_COLLECTIONS collections ${BACKLOG_INTERVAL_MS} ms apart ($(basename "$SERIES"))"
FILLED="$("$FILL" --dir "$W/backlog-wal" --remote bench --series "$SERIES" \
    --collections "$BACKLOG_COLLECTIONS" --interval-ms "$BACKLOG_INTERVAL_MS" \
    --label job=node --label instance=127.0.0.1:9100)"
note "filled: $FILLED"
# Real interval for the new collections; a short max_backoff only so the
# drain starts soon after the receiver appears (it does not change throughput).
cairn_config "$W/cairn_backlog.toml" "$P_C3" "$W/backlog-wal" "http://127.0.0.1:$P_VM2/api/v1/write" \
    "$((BACKLOG_INTERVAL_MS / 1000))s" 0s 1s
start cairn_backlog "$CAIRN" --config "$W/cairn_backlog.toml"
wait_http cairn_backlog "http://127.0.0.1:$P_C3/-/ready"
python3 "$HELPER" backlog-rss --pid "${PID_OF[cairn_backlog]}" --url "http://127.0.0.1:$P_C3/metrics" \
    --wait "$BACKLOG_DOWN" --fill "$FILLED" --out "$RESULTS"
# The helper starts the receiver itself, so it can watch cairn from before.
python3 "$HELPER" backlog-drain --pid "${PID_OF[cairn_backlog]}" --url "http://127.0.0.1:$P_C3/metrics" \
    --vm-metrics "http://127.0.0.1:$P_VM2/metrics" --max "$BACKLOG_DRAIN_MAX" --out "$RESULTS" \
    --receiver-pidfile "$W/vm2.pid" --receiver-log "$W/vm2.log" -- \
    "$VM" -storageDataPath="$W/vm2" -httpListenAddr="127.0.0.1:$P_VM2" -loggerLevel=ERROR
stop cairn_backlog
stop_pid "$(cat "$W/vm2.pid")"

python3 "$HELPER" report --out "$RESULTS" --batched-flush "$BATCHED_FLUSH"

logs=("$W/cairn.log" "$W/cairn_b.log" "$W/cairn_s.log" "$W/cairn_backlog.log")
skipped="$(cat "${logs[@]}" | grep -c 'collector is not implemented' || true)"
if grep -hE ' (WARN|ERROR) ' "${logs[@]}" | grep -qv 'collector is not implemented'; then
    echo
    echo "cairn's warnings and errors during the run (first 12, not counting $skipped" \
        "\"collector is not implemented\" lines; the outage makes some expected):"
    grep -hE ' (WARN|ERROR) ' "${logs[@]}" | grep -v 'collector is not implemented' |
        head -n 12 | cut -c 1-260 | sed 's/^/    /'
fi
