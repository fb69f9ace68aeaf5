#!/usr/bin/env bash
# Builds cairn's .deb for one target: packaging/build-deb.sh [TARGET]
#
#   TARGET  a Rust target triple; default: the host's. Tested:
#           x86_64-unknown-linux-gnu (amd64), aarch64-unknown-linux-gnu (arm64),
#           armv7-unknown-linux-gnueabihf (armhf). The *-musl triples build a
#           static binary instead (same package layout).
#
# Contract: the LAST line of stdout is the path of the .deb; everything else
# goes to stderr. A tarball with the same files (binary, unit, config, README)
# is written next to it: cairn-VERSION-TARGET.tar.gz.
#
# No Docker: the binary is linked by Zig through cargo-zigbuild against glibc
# $CAIRN_GLIBC's symbols (default 2.17), so the same .deb runs on Debian 11 /
# Raspberry Pi OS 11 (glibc 2.31) and anything newer; a binary linked by the
# build host's own gcc would need the host's glibc (2.36 on Debian 12). The
# script checks the result needs no newer glibc symbol.
#
# Installs what is missing, and nothing else: the rustup target, cargo-deb
# (cargo install), ziglang + cargo-zigbuild (pip, into a venv under
# target/tools when they are not on PATH). Re-running reuses all of it.
#
# Environment:
#   CAIRN_PROFILE   cargo profile (default dist: fat LTO, 1 codegen unit,
#                   stripped; see Cargo.toml)
#   CAIRN_GLIBC     glibc version to link against (default 2.17)
#   CAIRN_FEATURES  cargo features for the binary (e.g. sled)
#   CAIRN_DEB_DIR   where the .deb goes (default target/debian)
#   CARGO_TARGET_DIR is honoured.
set -euo pipefail

# stdout is reserved for the result; all progress goes to stderr.
exec 3>&1 1>&2

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

HOST="$(rustc -vV | sed -n 's/^host: //p')"
TARGET="${1:-$HOST}"
PROFILE="${CAIRN_PROFILE:-dist}"
GLIBC="${CAIRN_GLIBC:-2.17}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DEB_DIR="${CAIRN_DEB_DIR:-$TARGET_DIR/debian}"
TOOLS="$ROOT/target/tools"
# Versions known to work here; override to try others.
ZIGLANG_VERSION="${CAIRN_ZIGLANG_VERSION:-0.17.1}"
ZIGBUILD_VERSION="${CAIRN_ZIGBUILD_VERSION:-0.24.0}"
CARGO_DEB_VERSION="${CAIRN_CARGO_DEB_VERSION:-^3.8}"

say() { printf '==> build-deb: %s\n' "$*"; }
die() {
    printf 'build-deb: %s\n' "$*"
    exit 1
}

case "$TARGET" in
*-linux-gnu | *-linux-gnueabihf) ZIG_TARGET="$TARGET.$GLIBC" ;;
*-linux-musl | *-linux-musleabihf) ZIG_TARGET="$TARGET" ;;
*) die "unsupported target $TARGET (want a *-linux-gnu* or *-linux-musl* triple)" ;;
esac

ensure_rust_target() {
    if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        return
    fi
    command -v rustup >/dev/null || die "target $TARGET is not installed and rustup is missing"
    say "rustup target add $TARGET"
    rustup target add "$TARGET"
}

ensure_cargo_deb() {
    # --profile and --cargo-build need cargo-deb 2 or newer.
    if cargo deb --version 2>/dev/null | grep -qE ' ([2-9]|[1-9][0-9])\.'; then
        return
    fi
    say "cargo install cargo-deb --locked --version $CARGO_DEB_VERSION"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
}

have_zig() {
    command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1
}

ensure_zigbuild() {
    if [[ -x "$TOOLS/venv/bin/cargo-zigbuild" ]]; then
        export PATH="$TOOLS/venv/bin:$PATH"
    fi
    if command -v cargo-zigbuild >/dev/null && have_zig; then
        return
    fi
    command -v python3 >/dev/null || die "python3 is needed to install ziglang and cargo-zigbuild"
    # A venv of our own: Debian's system python refuses `pip install` (PEP 668).
    if [[ ! -x "$TOOLS/venv/bin/pip" ]]; then
        say "python3 -m venv $TOOLS/venv"
        if ! python3 -m venv "$TOOLS/venv"; then
            say "apt-get install python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
            rm -rf "$TOOLS/venv"
            python3 -m venv "$TOOLS/venv"
        fi
    fi
    say "pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$ZIGBUILD_VERSION (into $TOOLS/venv)"
    "$TOOLS/venv/bin/pip" install --quiet "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
    # cargo-zigbuild runs `python3 -m ziglang` when no zig is on PATH: the
    # venv's python3 must come first.
    export PATH="$TOOLS/venv/bin:$PATH"
}

# The highest GLIBC_x.y symbol version the binary needs ("" if none: static).
max_glibc() {
    objdump -T "$1" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/GLIBC_//' | sort -uV | tail -n1
}

ensure_rust_target
ensure_cargo_deb
ensure_zigbuild

features=()
if [[ -n "${CAIRN_FEATURES:-}" ]]; then
    features=(--features "$CAIRN_FEATURES")
fi

say "cargo zigbuild --locked --profile $PROFILE --target $ZIG_TARGET ${features[*]}"
cargo zigbuild --locked --profile "$PROFILE" --target "$ZIG_TARGET" "${features[@]}"

BIN="$TARGET_DIR/$TARGET/$PROFILE/cairn"
[[ -x "$BIN" ]] || die "no binary at $BIN"
say "binary: $BIN ($(stat -c %s "$BIN") bytes)"
if [[ "$ZIG_TARGET" != "$TARGET" ]]; then
    need="$(max_glibc "$BIN")"
    say "needs glibc $need (asked for $GLIBC)"
    if [[ "$(printf '%s\n%s\n' "$need" "$GLIBC" | sort -V | tail -n1)" != "$GLIBC" ]]; then
        die "$BIN needs glibc $need, newer than $GLIBC"
    fi
fi

mkdir -p "$DEB_DIR"
say "cargo deb --no-build --target $TARGET --profile $PROFILE"
# The profile already stripped the binary (and cargo-deb would look for a
# cross strip we do not need).
out="$(cargo deb --no-build --no-strip --target "$TARGET" --profile "$PROFILE" --output "$DEB_DIR" 3>&-)"
deb="$(printf '%s\n' "$out" | tail -n1)"
[[ -f "$deb" ]] || die "cargo deb did not report a .deb (got: $out)"
say "package: $deb ($(stat -c %s "$deb") bytes)"

# The same files as a tarball, for hosts without dpkg (README: "From a
# tarball").
version="$(dpkg-deb -f "$deb" Version)"
name="cairn-${version%-*}-$TARGET"
stage="$TOOLS/stage/$name"
rm -rf "$stage"
mkdir -p "$stage"
install -m 0755 "$BIN" "$stage/cairn"
install -m 0644 systemd/cairn.service packaging/cairn.toml README.md "$stage/"
tar -C "$(dirname "$stage")" --owner=0 --group=0 -czf "$DEB_DIR/$name.tar.gz" "$name"
say "tarball: $DEB_DIR/$name.tar.gz"

echo "$deb" >&3
