#!/usr/bin/env bash
# bench/parity.sh: runs Debian's node_exporter 1.5.0 and cairn on this host
# with the same collectors and prints every difference: families missing or
# extra, TYPE / HELP / label-name mismatches, series missing or extra, and
# values outside node_exporter's before/after window (plus a tolerance for
# moving counters). The comparison is the integration test's own code
# (tests/common/parity.rs, parity_run.rs), built as examples/parity.rs.
#
# Usage:
#   bench/parity.sh                 default collectors of each (+ tcpstat,
#                                   processes, interrupts; node_exporter
#                                   without systemd): family coverage + diffs
#   bench/parity.sh all             the integration test's strict list
#   bench/parity.sh cpu netstat ... only those collectors, strictly
#
# Environment:
#   NODE_EXPORTER=/path/to/node_exporter-1.5.0   (else PATH, target/deps,
#                                                 /tmp/deps)
#   TEXTFILE_DIR=/dir     --collector.textfile.directory for both ("")
#   RELEASE=1             compare a release build (default: debug)
# Exit status: 0 when there is no difference (strict) or coverage is at
# least 98% (defaults), 1 otherwise, 2 on a usage or setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROFILE_FLAG=()
PROFILE_DIR=debug
if [[ "${RELEASE:-}" == 1 ]]; then
    PROFILE_FLAG=(--release)
    PROFILE_DIR=release
fi

echo "building cairn and the parity tool ($PROFILE_DIR)..." >&2
cargo build --quiet "${PROFILE_FLAG[@]}" --bin cairn --example parity

ARGS=(--cairn "$ROOT/target/$PROFILE_DIR/cairn" --textfile-dir "${TEXTFILE_DIR:-}")
if [[ -n "${NODE_EXPORTER:-}" ]]; then
    ARGS+=(--node-exporter "$NODE_EXPORTER")
fi
case "${1:-}" in
    "") ARGS+=(--defaults) ;;
    all) shift; ARGS+=(--strict) ;;
    *) ARGS+=("$@") ;;
esac

exec "$ROOT/target/$PROFILE_DIR/examples/parity" "${ARGS[@]}"
