#!/usr/bin/env bash
# bench/scrape.sh: a benchmark (not a test) of agent-mode scraping: cairn
# and Prometheus 2.42 `--enable-feature=agent` side by side in one run,
# scraping the SAME targets with the SAME scrape_configs, both writing by
# remote_write to one local VictoriaMetrics through the counting proxy
# (bench/remote_write.py proxy, one listener each). Prints one Markdown
# table: CPU per scrape, RSS, wire bytes per sample.
#
# Targets (bench/scrape.py targets, one Python process): one big target
# with BIG_SERIES series and SMALL_TARGETS small ones (~80 series each:
# counters, a histogram, a summary, gauges, a label value that changes
# every 10 minutes), each on its own loopback port, values changing on
# every scrape, text format 0.0.4.
#
# The scrape_configs are written once, to scrape.yml: cairn reads that file
# through `scrape_config_files`; Prometheus 2.42 (which has no
# scrape_config_files) gets the same text under its `global:` and above its
# `remote_write:`. cairn's own collectors are reduced to loadavg
# (`--collector.disable-defaults --collector.loadavg`), so its figures are
# the scraping plus a three-series collection per interval. Each agent has
# its data dir (cairn's WAL, Prometheus' --storage.agent.path) in the work
# dir; queue settings are everyone's defaults.
#
# CPU = utime+stime of the agent's process over the window (after WARMUP),
# divided by the scrapes the targets served it in the window (told apart by
# User-Agent). RSS = VmRSS at the end, its max over 1 s samples in the
# window, and VmHWM.
#
# Environment (seconds unless said):
#   INTERVAL=15s  WARMUP=3 intervals (at least 30)  WINDOW=8 intervals
#   BIG_SERIES=10000  SMALL_TARGETS=50
#   PROXY=1       0: agents write to VictoriaMetrics directly (no wire figures;
#                 the Python proxy's decoding costs CPU on a small machine)
#   CAIRN_BIN     cairn binary (default target/release/cairn, built with
#                 `nice -n 5 cargo build --release --features sled` unless
#                 SKIP_BUILD=1)
#   BENCH_DIR=DIR work dir (default: a new temp dir, removed unless KEEP=1)
#   CAIRN_PROMETHEUS, CAIRN_VICTORIA_METRICS, CAIRN_VMAGENT, CAIRN_NODE_EXPORTER:
#       binaries; else PATH, else target/deps/usr/bin, else /tmp/deps/usr/bin
# Every process started here is stopped by pid on exit, also on Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/bench/scrape.py"
PROXY_PY="$ROOT/bench/remote_write.py"
INTERVAL="${INTERVAL:-15s}"
INTERVAL="${INTERVAL%s}"
BIG_SERIES="${BIG_SERIES:-10000}"
SMALL_TARGETS="${SMALL_TARGETS:-50}"
PROXY="${PROXY:-1}"
KEEP="${KEEP:-0}"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
[[ "$INTERVAL" =~ ^[0-9]+$ && "$INTERVAL" -gt 0 ]] || die "INTERVAL must be whole seconds (5s, 15s), not $INTERVAL"
WARMUP="${WARMUP:-$((3 * INTERVAL > 30 ? 3 * INTERVAL : 30))}"
WINDOW="${WINDOW:-$((8 * INTERVAL))}"
[[ "$BIG_SERIES" =~ ^[0-9]+$ && "$SMALL_TARGETS" =~ ^[0-9]+$ ]] || die "BIG_SERIES and SMALL_TARGETS are counts"
command -v python3 >/dev/null || die "python3 is required"
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
    W="$(mktemp -d "${TMPDIR:-/tmp}/cairn-scrape-bench.XXXXXX")"
fi
RESULTS="$W/results.json"

cleanup() {
    trap '' INT TERM
    stop_all
    if [[ "$KEEP" == 1 ]]; then
        echo "scrape.sh: kept $W" >&2
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

N_TARGETS=$((SMALL_TARGETS + 1))
read -r P_VM P_CTL P_R1 P_R2 P_PROM P_C1 P_TCTL P_BIG < <(free_ports 8)
SMALL_PORTS=()
if ((SMALL_TARGETS > 0)); then read -r -a SMALL_PORTS < <(free_ports "$SMALL_TARGETS"); fi

note "work dir $W"
start vm "$VM" -storageDataPath="$W/vm" -httpListenAddr="127.0.0.1:$P_VM" -loggerLevel=ERROR
wait_http vm "http://127.0.0.1:$P_VM/health"
if [[ "$PROXY" == 1 ]]; then
    start proxy python3 "$PROXY_PY" proxy --upstream "http://127.0.0.1:$P_VM/api/v1/write" \
        --control "$P_CTL" --route "cairn=$P_R1" --route "prometheus=$P_R2"
    wait_http proxy "http://127.0.0.1:$P_CTL/ping"
    URL_CAIRN="http://127.0.0.1:$P_R1/api/v1/write"
    URL_PROM="http://127.0.0.1:$P_R2/api/v1/write"
else
    URL_CAIRN="http://127.0.0.1:$P_VM/api/v1/write"
    URL_PROM="$URL_CAIRN"
fi

start targets python3 "$HELPER" targets --control "$P_TCTL" --big-port "$P_BIG" --big-series "$BIG_SERIES" \
    --small-ports "$(IFS=,; echo "${SMALL_PORTS[*]}")"
wait_http targets "http://127.0.0.1:$P_TCTL/stats"

# The one scrape_configs list both agents read.
{
    echo "scrape_configs:"
    cat <<EOF
  - job_name: big
    scrape_interval: ${INTERVAL}s
    scrape_timeout: ${INTERVAL}s
    static_configs:
      - targets: ["127.0.0.1:$P_BIG"]
EOF
    if ((SMALL_TARGETS > 0)); then
        cat <<EOF
  - job_name: app
    scrape_interval: ${INTERVAL}s
    scrape_timeout: ${INTERVAL}s
    static_configs:
      - targets:
EOF
        for p in "${SMALL_PORTS[@]}"; do echo "          - 127.0.0.1:$p"; done
    fi
} >"$W/scrape.yml"
{
    printf 'global:\n  scrape_interval: %ss\n  external_labels:\n    agent: prometheus\n' "$INTERVAL"
    cat "$W/scrape.yml"
    printf 'remote_write:\n  - url: %s\n' "$URL_PROM"
} >"$W/prometheus.yml"
cat >"$W/cairn.toml" <<EOF
scrape_config_files = ["$W/scrape.yml"]
[global]
scrape_interval = "${INTERVAL}s"
external_labels = { agent = "cairn" }
[web]
listen_address = "127.0.0.1:$P_C1"
[wal]
dir = "$W/cairn-wal"
[[remote_write]]
name = "bench"
url = "$URL_CAIRN"
EOF
"$CAIRN" check-config "$W/cairn.toml" >/dev/null 2>"$W/check-config.log" ||
    { cat "$W/check-config.log" >&2; die "cairn check-config rejected $W/cairn.toml"; }

start cairn "$CAIRN" --config "$W/cairn.toml" --collector.disable-defaults --collector.loadavg
start prometheus "$PROMETHEUS" --enable-feature=agent --config.file="$W/prometheus.yml" \
    --storage.agent.path="$W/prometheus-agent" --web.listen-address="127.0.0.1:$P_PROM" --log.level=warn
wait_http cairn "http://127.0.0.1:$P_C1/-/ready"
wait_http prometheus "http://127.0.0.1:$P_PROM/-/ready"

echo "## Agent-mode scraping: cairn against Prometheus' agent on the same scrape_configs"
echo
echo "- host: $(uname -srm), $(nproc) CPUs, shared with other builds during the run (CPU figures are noisy);" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- cairn: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown) ($CAIRN," \
    "--collector.disable-defaults --collector.loadavg, scrape_config_files); $(version "$PROMETHEUS" --version)" \
    "--enable-feature=agent; receiver: victoria-metrics $(deb_of "$VM" victoria-metrics)" \
    "$([[ "$PROXY" == 1 ]] && echo "behind the counting proxy" || echo "directly")"
echo "- targets: 1 of $BIG_SERIES series + $SMALL_TARGETS of ~80 series (text 0.0.4, every value changes every scrape)," \
    "every ${INTERVAL} s; WARMUP ${WARMUP} s, WINDOW ${WINDOW} s"
echo

PROXY_ARGS=()
[[ "$PROXY" == 1 ]] && PROXY_ARGS=(--proxy "http://127.0.0.1:$P_CTL")
python3 "$HELPER" measure --targets "http://127.0.0.1:$P_TCTL" "${PROXY_ARGS[@]}" --out "$RESULTS" \
    --warmup "$WARMUP" --window "$WINDOW" --interval "$INTERVAL" --n-targets "$N_TARGETS" \
    --agent "cairn,${PID_OF[cairn]},cairn" --agent "prometheus,${PID_OF[prometheus]},prometheus"
echo
echo "CPU per scrape = the agent's utime+stime in the window / scrapes the targets served it in the window;"
echo "cairn's includes its loadavg collection and its own /metrics being idle. Aim: cairn ≤ 0.5× CPU, ≤ 0.3× RSS."
