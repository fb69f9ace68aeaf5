# shellcheck shell=bash
# bench/lib.sh: shell shared by the benchmarks (sourced, not run): messages,
# finding the peer binaries, starting background processes and stopping
# them by pid, waiting for an HTTP endpoint, free loopback ports. It never
# stops a process it did not start: every pid it knows is one `start` made.
#
# The sourcing script sets ROOT (the repository) and W (its work dir, where
# the logs go) before calling start/wait_http.

BENCH_NAME="${BENCH_NAME:-$(basename "$0")}"

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# find_bin ENV_VALUE NAME...: the env value, else the first NAME on PATH,
# in target/deps/usr/bin or in /tmp/deps/usr/bin.
find_bin() {
    local given="$1" n d
    shift
    if [[ -n "$given" ]]; then
        [[ -x "$given" ]] || die "$given is not executable"
        echo "$given"
        return
    fi
    for n in "$@"; do
        if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return; fi
    done
    for d in "$ROOT/target/deps/usr/bin" /tmp/deps/usr/bin; do
        for n in "$@"; do
            if [[ -x "$d/$n" ]]; then echo "$d/$n"; return; fi
        done
    done
}

# The help shown when a peer binary is missing.
deps_help() {
    cat >&2 <<HELP
$BENCH_NAME: needs Debian's prometheus (2.42), victoria-metrics (vmagent is in
that package) and prometheus-node-exporter (1.5.0). scripts/test.sh unpacks them into
target/deps; or by hand, without installing anything:
    mkdir -p /tmp/deps/debs && cd /tmp/deps/debs
    apt-get download prometheus victoria-metrics prometheus-node-exporter
    for d in *.deb; do dpkg-deb -x "\$d" /tmp/deps; done
or point CAIRN_PROMETHEUS, CAIRN_VICTORIA_METRICS, CAIRN_VMAGENT, CAIRN_NODE_EXPORTER at them.
HELP
}

# Sets PROMETHEUS, VM, VMAGENT and NE (exits with help if one is missing).
find_peers() {
    PROMETHEUS="$(find_bin "${CAIRN_PROMETHEUS:-}" prometheus)"
    VM="$(find_bin "${CAIRN_VICTORIA_METRICS:-}" victoria-metrics)"
    local vmagent_given="${CAIRN_VMAGENT:-}"
    if [[ -z "$vmagent_given" && -n "$VM" && -x "$(dirname "$VM")/vmagent" ]]; then
        vmagent_given="$(dirname "$VM")/vmagent"
    fi
    VMAGENT="$(find_bin "$vmagent_given" vmagent)"
    NE="$(find_bin "${CAIRN_NODE_EXPORTER:-}" prometheus-node-exporter node_exporter)"
    if [[ -z "$PROMETHEUS" || -z "$VM" || -z "$VMAGENT" || -z "$NE" ]]; then
        deps_help
        exit 1
    fi
}

# Every process started here, in start order; stopped in reverse by pid.
PIDS=()
declare -A PID_OF
stop_pid() { # pid: TERM, up to 5 s, then KILL (Prometheus waits a minute
    #          for its remote-write queue if the receiver is gone)
    local pid="$1" i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_all() { # every process `start` started, newest first
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}"
    done
    PIDS=()
}
start() { # name command...: runs it in the background, log in $W/name.log
    local name="$1"
    shift
    "$@" >"$W/$name.log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
}
stop() { # name
    stop_pid "${PID_OF[$1]}"
}
wait_http() { # name url
    local i
    for i in $(seq 150); do
        kill -0 "${PID_OF[$1]}" 2>/dev/null || { tail -n 20 "$W/$1.log" >&2; die "$1 exited at startup"; }
        if python3 -c "import urllib.request; urllib.request.urlopen('$2', timeout=2).read()" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$W/$1.log" >&2
    die "$1 did not answer on $2"
}

# free_ports N: N distinct free loopback ports on one line (all held open
# while choosing, so they differ).
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}

version() { "$@" 2>&1 | head -n 1 | sed 's/ *(.*//' || true; }
deb_of() { # binary package: the .deb it came from, if scripts/test.sh unpacked it
    local d
    d="$(dirname "$(dirname "$(dirname "$1")")")/debs"
    find "$d" -maxdepth 1 -name "$2_*.deb" -printf '%f\n' 2>/dev/null | head -n 1 | sed 's/\.deb$//' || true
}

# The configs every side-by-side run writes, so the stacks compare on the
# same terms. cairn's series get the job/instance labels the scrapers add.
scrape_config() { # file interval_s target [remote_write_url]: Prometheus/vmagent YAML
    {
        cat <<EOF
global:
  scrape_interval: ${2}s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:$3"]
EOF
        if [[ -n "${4:-}" ]]; then printf 'remote_write:\n  - url: %s\n' "$4"; fi
    } >"$1"
}
cairn_config() { # file listen_port wal_dir remote_url interval flush max_backoff [stage_dir]
    cat >"$1" <<EOF
[global]
scrape_interval = "$5"
external_labels = { job = "node", instance = "127.0.0.1:9100" }
[web]
listen_address = "127.0.0.1:$2"
[wal]
dir = "$3"
flush_interval = "$6"
${8:+stage_dir = \"$8\"}
[[remote_write]]
name = "bench"
url = "$4"
queue_config = { max_backoff = "$7" }
EOF
}
