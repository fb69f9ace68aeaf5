#!/usr/bin/env bash
# The one test command, for developers and CI alike (.ci/run calls it).
#
# Installs what the tests need without starting any service: Debian's
# prometheus (promtool), prometheus-node-exporter, victoria-metrics, redis
# and postgresql-15 with their exporters are unpacked with `apt-get download`
# + `dpkg-deb -x` into target/deps, never installed (only the shared
# libraries an unpacked binary lacks are installed, with no service
# allowed to start). Then runs rustfmt, clippy and every test (unit +
# end-to-end) from ONE release build, then the packaging tests
# (packaging/test-packages.sh: the systemd unit, the amd64 .deb through dpkg,
# the arm64 .deb under qemu), and exits non-zero if any step failed. Safe to
# run again: what is already there is reused.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DEPS="${CAIRN_DEPS_DIR:-$ROOT/target/deps}"
# Each package with a file (under $DEPS) that shows it is unpacked. redis'
# binaries are in redis-tools (redis-server is its link to one of them).
PACKAGES=(
    prometheus:usr/bin/prometheus
    prometheus-node-exporter:usr/bin/prometheus-node-exporter
    victoria-metrics:usr/bin/victoria-metrics
    redis-server:usr/bin/redis-server
    redis-tools:usr/bin/redis-check-rdb
    prometheus-redis-exporter:usr/bin/prometheus-redis-exporter
    postgresql-15:usr/lib/postgresql/15/bin/postgres
    prometheus-postgres-exporter:usr/bin/prometheus-postgres-exporter
)
# Unpacked binaries that link shared libraries (the Go exporters and
# Prometheus do not), each with the package it comes from.
LINKED=(
    redis-tools:usr/bin/redis-check-rdb
    postgresql-15:usr/lib/postgresql/15/bin/postgres
    postgresql-15:usr/lib/postgresql/15/bin/initdb
)

say() { printf '==> %s\n' "$*"; }

# Returns 0 if apt knows a candidate for every package in "$@".
apt_knows_packages() {
    local p policy
    for p in "$@"; do
        # Captured first: `grep -q` closing the pipe early would fail the
        # pipeline under pipefail.
        policy="$(apt-cache policy "$p" 2>/dev/null)" || return 1
        grep -q 'Candidate: [0-9]' <<<"$policy" || return 1
    done
}

# `apt-get install` of "$@" with a policy-rc.d that forbids starting any
# service while apt runs (one that is already there is left alone).
apt_install_no_services() {
    local policy=/usr/sbin/policy-rc.d ours=0
    if ! apt_knows_packages "$@"; then
        say "apt-get update (package lists do not know $*)"
        apt-get update
    fi
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        ours=1
    fi
    say "apt-get install $*"
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" || rc=$?
    if ((ours)); then rm -f "$policy"; fi
    return "$rc"
}

# Downloads and unpacks every package of PACKAGES whose file is not in
# $DEPS yet (so a $CAIRN_DEPS_DIR unpacked before gains only what is new).
fetch_deps() {
    local t0=$SECONDS entry p missing=()
    for entry in "${PACKAGES[@]}"; do
        [[ -e "$DEPS/${entry#*:}" ]] || missing+=("${entry%%:*}")
    done
    if ((${#missing[@]} == 0)); then
        say "every test dependency already unpacked in $DEPS"
        return
    fi
    if ! apt_knows_packages "${missing[@]}"; then
        say "apt-get update (package lists do not know ${missing[*]})"
        apt-get update
    fi
    mkdir -p "$DEPS/debs"
    for p in "${missing[@]}"; do
        rm -f "$DEPS/debs/${p}_"*.deb
    done
    say "apt-get download ${missing[*]}"
    # One call: each apt-get reads the package lists first (~2 s).
    # apt-get download writes into the current directory; as root into a
    # directory its _apt sandbox user cannot write, so say not to drop
    # privileges instead of getting a warning.
    (cd "$DEPS/debs" && apt-get -o APT::Sandbox::User=root download "${missing[@]}")
    for p in "${missing[@]}"; do
        say "dpkg-deb -x ${p}_*.deb $DEPS"
        dpkg-deb -x "$DEPS/debs/${p}_"*.deb "$DEPS"
    done
    say "${missing[*]} unpacked in $((SECONDS - t0)) s"
}

# An unpacked binary finds its shared libraries on the system only: when
# one is missing, the library packages its package depends on that are not
# installed yet are installed (libraries only: no service, no user, no
# configuration; installed ones are left alone, never upgraded).
ensure_deps_libraries() {
    local entry bin linked lib libs=() broken=()
    for entry in "${LINKED[@]}"; do
        bin="${entry#*:}"
        # Captured first, as in apt_knows_packages.
        linked="$(ldd "$DEPS/$bin")"
        grep -q 'not found' <<<"$linked" || continue
        broken+=("$bin")
        while read -r lib; do
            [[ "$(dpkg-query -W -f='${db:Status-Status}' "$lib" 2>/dev/null)" == installed ]] ||
                libs+=("$lib")
        done < <(apt-cache depends --important "${entry%%:*}" |
            awk '$1 ~ /Depends:$/ && $2 ~ /^lib/ {print $2}' | sort -u)
    done
    ((${#broken[@]})) || return 0
    say "missing shared libraries of ${broken[*]}"
    local t0=$SECONDS
    mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
    apt_install_no_services "${libs[@]}"
    for bin in "${broken[@]}"; do
        if ldd "$DEPS/$bin" | grep 'not found'; then
            echo "scripts/test.sh: $DEPS/$bin still lacks the libraries above" >&2
            exit 1
        fi
    done
    say "libraries installed in $((SECONDS - t0)) s"
}

# Debian's chromium, for the status page test (a real browser renders `/`).
# Installed (not unpacked: it needs its shared libraries), starting no
# service; one that is already there is left alone.
ensure_chromium() {
    if command -v chromium >/dev/null; then
        say "chromium already installed"
        return
    fi
    local t0=$SECONDS
    apt_install_no_services chromium
    say "chromium installed in $((SECONDS - t0)) s"
}

# Tools the whole-binary tests call: openssl (certificates for the HTTPS
# test), htpasswd from apache2-utils (bcrypt users), curl (the HTTPS
# client), prlimit from util-linux (the open-files limit of the flood test).
ensure_test_tools() {
    local missing=() pair
    for pair in openssl:openssl apache2-utils:htpasswd curl:curl util-linux:prlimit; do
        command -v "${pair#*:}" >/dev/null || missing+=("${pair%%:*}")
    done
    ((${#missing[@]})) || return 0
    say "apt-get install -y ${missing[*]}"
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
}

ensure_tools() {
    local c
    for c in cargo rustfmt cargo-clippy; do
        command -v "$c" >/dev/null || {
            echo "scripts/test.sh: $c not found: install the Rust toolchain with rustfmt and clippy" >&2
            exit 1
        }
    done
    if ! cargo nextest --version >/dev/null 2>&1; then
        say "cargo install cargo-nextest --locked"
        cargo install cargo-nextest --locked
    fi
}

ensure_tools
ensure_test_tools
fetch_deps
ensure_deps_libraries
ensure_chromium
export CAIRN_PROMETHEUS="$DEPS/usr/bin/prometheus"
export CAIRN_PROMTOOL="$DEPS/usr/bin/promtool"
export CAIRN_NODE_EXPORTER="$DEPS/usr/bin/prometheus-node-exporter"
export CAIRN_VICTORIA_METRICS="$DEPS/usr/bin/victoria-metrics"
export CAIRN_REDIS_SERVER="$DEPS/usr/bin/redis-server"
export CAIRN_REDIS_EXPORTER="$DEPS/usr/bin/prometheus-redis-exporter"
export CAIRN_POSTGRES_BIN="$DEPS/usr/lib/postgresql/15/bin"
export CAIRN_POSTGRES_EXPORTER="$DEPS/usr/bin/prometheus-postgres-exporter"
export CAIRN_CHROMIUM="$(command -v chromium)"
say "CAIRN_PROMETHEUS=$CAIRN_PROMETHEUS"
say "CAIRN_PROMTOOL=$CAIRN_PROMTOOL"
say "CAIRN_NODE_EXPORTER=$CAIRN_NODE_EXPORTER"
say "CAIRN_VICTORIA_METRICS=$CAIRN_VICTORIA_METRICS"
say "CAIRN_REDIS_SERVER=$CAIRN_REDIS_SERVER"
say "CAIRN_REDIS_EXPORTER=$CAIRN_REDIS_EXPORTER"
say "CAIRN_POSTGRES_BIN=$CAIRN_POSTGRES_BIN"
say "CAIRN_POSTGRES_EXPORTER=$CAIRN_POSTGRES_EXPORTER"
say "CAIRN_CHROMIUM=$CAIRN_CHROMIUM"

# Every step runs even if an earlier one failed, so one run shows everything.
failed=()
step() {
    say "$*"
    if ! "$@"; then
        failed+=("$*")
    fi
}

step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step cargo clippy --all-targets --features sled -- -D warnings
# One release build with both WAL engines: the WAL suite runs over both, and
# the end-to-end tests use this same binary.
step cargo nextest run --release --features sled --no-fail-fast
# Fuzz smoke: the proptest fuzz targets (tests/fuzz.rs) with more cases than
# the 256 of the run above; measured ~5 s per 256 cases for all five targets.
step env PROPTEST_CASES=1500 cargo nextest run --release --features sled --test fuzz
# Packaging (packaging/test-packages.sh says what each step checks).
# They build the amd64, arm64 and armhf packages with the dist profile (fat
# LTO): measured from cold on 2 cores 2 + 2 + 1.5 min, plus 1.7 min to
# install cargo-deb once; the checks themselves take seconds. The armhf step
# is the one to drop if CI time gets tight (arm64 covers the same code paths).
step packaging/test-packages.sh unit
step packaging/test-packages.sh syscalls
step packaging/test-packages.sh arm64
step packaging/test-packages.sh armhf
step packaging/test-packages.sh dpkg

if ((${#failed[@]})); then
    say "FAILED steps:"
    printf '    %s\n' "${failed[@]}"
    exit 1
fi
say "all steps passed"
