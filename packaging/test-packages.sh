#!/usr/bin/env bash
# Packaging tests, run by scripts/test.sh as separate steps:
#
#   packaging/test-packages.sh unit      systemd-analyze verify + security <= 2.0
#   packaging/test-packages.sh syscalls  every syscall cairn makes passes the
#                                        unit's SystemCallFilter=; sd_notify
#   packaging/test-packages.sh arm64     build the arm64 .deb, run it under
#                                        qemu, check its glibc symbols
#   packaging/test-packages.sh armhf     the same for armv7 / armhf
#   packaging/test-packages.sh dpkg      build the amd64 .deb, install it with
#                                        dpkg (nothing may start), upgrade,
#                                        remove, purge
#   packaging/test-packages.sh all       all of the above
#
# Installs the Debian packages it needs (qemu-user-static, the ARM C
# libraries qemu runs the binaries with, binutils, strace, curl; systemd only
# for systemd-analyze). Never starts a service: there is no systemd here, and
# the dpkg step refuses to run where systemd is PID 1 unless told to.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
UNIT="$ROOT/systemd/cairn.service"
WORK="${CAIRN_PKG_TEST_DIR:-$ROOT/target/pkg-test}"
# The promise: the ARM packages run on Debian 11 / Raspberry Pi OS 11.
MAX_GLIBC="2.31"
MAX_EXPOSURE="2.0"

say() { printf '==> test-packages: %s\n' "$*" >&2; }
fail() {
    printf 'test-packages: FAIL: %s\n' "$*" >&2
    exit 1
}

# Installs each Debian package whose probe file is missing.
need_apt() {
    local missing=() pair pkg probe
    for pair in "$@"; do
        pkg="${pair%%:*}"
        probe="${pair#*:}"
        [[ -e "$probe" ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ! apt-get install -y --no-install-recommends --dry-run "${missing[@]}" >/dev/null 2>&1; then
        say "apt-get update"
        apt-get update >&2
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# Builds the .deb for a target (reused when already built from this tree).
build_deb() {
    local target="$1" deb
    deb="$("$ROOT/packaging/build-deb.sh" "$target" | tail -n1)"
    [[ -f "$deb" ]] || fail "build-deb.sh $target printed no .deb path"
    printf '%s\n' "$deb"
}

# Unpacks a .deb's files into a fresh directory and prints it.
unpack() {
    local deb="$1" dir
    dir="$WORK/$(basename "$deb" .deb)"
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    printf '%s\n' "$dir"
}

max_glibc() {
    objdump -T "$1" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/GLIBC_//' | sort -uV | tail -n1
}

# The ARM binary runs under qemu-user with Debian's cross libc (2.36, newer
# than what the binary needs; the symbol check below proves the lower bound).
check_arm() {
    local target="$1" arch="$2" qemu="$3" sysroot="$4" machine="$5"
    local deb dir bin out v
    deb="$(build_deb "$target")"
    say "$deb: $(dpkg-deb -f "$deb" Architecture), $(stat -c %s "$deb") bytes"
    [[ "$(dpkg-deb -f "$deb" Architecture)" == "$arch" ]] || fail "$deb is not $arch"
    dir="$(unpack "$deb")"
    bin="$dir/usr/bin/cairn"
    file "$bin" >&2 || true
    say "binary size: $(stat -c %s "$bin") bytes"

    v="$(max_glibc "$bin")"
    [[ -n "$v" ]] || fail "$bin has no GLIBC symbol versions (not a glibc binary?)"
    if [[ "$(printf '%s\n%s\n' "$v" "$MAX_GLIBC" | sort -V | tail -n1)" != "$MAX_GLIBC" ]]; then
        objdump -T "$bin" | grep -E "GLIBC_$v" >&2 || true
        fail "$bin needs glibc $v, newer than $MAX_GLIBC (Debian 11)"
    fi
    say "$arch binary needs at most GLIBC_$v (limit $MAX_GLIBC)"

    out="$("$qemu" -L "$sysroot" "$bin" --version)" || fail "$arch: cairn --version failed under $qemu"
    [[ "$out" == cairn\ * ]] || fail "$arch: unexpected --version output: $out"
    say "$arch: $out"
    out="$("$qemu" -L "$sysroot" "$bin" collect --once)" || fail "$arch: cairn collect --once failed"
    grep -qE '^node_load1 [0-9.e+-]+$' <<<"$out" || fail "$arch: no node_load1 in collect --once"
    grep -qE "^node_uname_info\{.*machine=\"$machine\"" <<<"$out" ||
        fail "$arch: no node_uname_info{machine=\"$machine\"} in collect --once"
    grep -qE '^node_cpu_seconds_total\{' <<<"$out" || fail "$arch: no node_cpu_seconds_total"
    say "$arch: collect --once printed $(grep -vc '^#' <<<"$out") samples, node_load1 and node_uname_info among them"
}

step_arm64() {
    need_apt qemu-user-static:/usr/bin/qemu-aarch64-static binutils:/usr/bin/objdump \
        file:/usr/bin/file libc6-arm64-cross:/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1
    check_arm aarch64-unknown-linux-gnu arm64 qemu-aarch64-static /usr/aarch64-linux-gnu aarch64
}

step_armhf() {
    need_apt qemu-user-static:/usr/bin/qemu-arm-static binutils:/usr/bin/objdump \
        file:/usr/bin/file libc6-armhf-cross:/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3
    check_arm armv7-unknown-linux-gnueabihf armhf qemu-arm-static /usr/arm-linux-gnueabihf armv7l
}

# A copy of the unit whose binary exists here (verify checks ExecStart).
unit_copy() {
    local bin="$1" dir="$WORK/unit"
    rm -rf "$dir"
    mkdir -p "$dir"
    sed "s#/usr/bin/cairn#$bin#g" "$UNIT" >"$dir/cairn.service"
    printf '%s\n' "$dir/cairn.service"
}

host_binary() {
    local deb dir
    deb="$(build_deb "$(rustc -vV | sed -n 's/^host: //p')")"
    dir="$(unpack "$deb")"
    printf '%s\n' "$dir/usr/bin/cairn"
}

step_unit() {
    need_apt systemd:/usr/bin/systemd-analyze
    local bin unit out score
    bin="$(host_binary)"
    unit="$(unit_copy "$bin")"
    say "systemd-analyze verify (ExecStart=$bin)"
    out="$(systemd-analyze verify "$unit" 2>&1)" || fail "systemd-analyze verify failed: $out"
    [[ -z "$out" ]] || fail "systemd-analyze verify is not clean: $out"
    out="$(systemd-analyze security --offline=true --no-pager "$UNIT" 2>&1)" || true
    score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p' <<<"$out")"
    [[ -n "$score" ]] || fail "no exposure level in: $out"
    say "systemd-analyze security: exposure $score (limit $MAX_EXPOSURE)"
    awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
        fail "exposure $score is above $MAX_EXPOSURE: $(grep '✗' <<<"$out")"
}

# Prints every syscall name (one per line, sorted) the unit's
# SystemCallFilter= lets through, as systemd resolves it: the first entry
# decides between allow and deny list; later `~` entries remove from an allow
# list, later plain entries add to it.
expand_group() {
    local name="$1"
    if [[ "$name" != @* ]]; then
        printf '%s\n' "$name"
        return
    fi
    local line
    while read -r line; do
        [[ -z "$line" || "$line" == \#* || "$line" == "$name" ]] && continue
        expand_group "$line"
    done < <(systemd-analyze syscall-filter --no-pager "$name")
}

allowed_syscalls() {
    local mode="" line neg tok
    declare -A set=()
    while IFS= read -r line; do
        line="${line#SystemCallFilter=}"
        neg=0
        if [[ "$line" == ~* ]]; then
            neg=1
            line="${line#\~}"
        fi
        [[ -n "$mode" ]] || mode=$((neg ? 2 : 1)) # 1 allow list, 2 deny list
        for tok in $line; do
            while read -r tok; do
                # In an allow list `~` removes; in a deny list plain removes.
                if (((mode == 1 && neg == 0) || (mode == 2 && neg == 1))); then
                    set["$tok"]=1
                else
                    unset "set[$tok]"
                fi
            done < <(expand_group "$tok")
        done
    done < <(grep '^SystemCallFilter=' "$UNIT")
    [[ "$mode" == 1 ]] || fail "the unit has no SystemCallFilter allow list"
    printf '%s\n' "${!set[@]}" | sort -u
}

syscalls_of() {
    # strace -f lines: "PID name(args) = ret" (also "<... name resumed>").
    sed -nE 's/^[0-9]+ +([a-z_0-9]+)\(.*/\1/p' "$@" | sort -u
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

step_syscalls() {
    need_apt systemd:/usr/bin/systemd-analyze strace:/usr/bin/strace curl:/usr/bin/curl
    local bin dir names allowed used bad port pid cpid i notify notified
    bin="$(host_binary)"
    dir="$WORK/syscalls"
    rm -rf "$dir"
    mkdir -p "$dir"
    allowed="$dir/allowed"
    allowed_syscalls >"$allowed"
    say "SystemCallFilter= allows $(wc -l <"$allowed") system calls"

    # Every collector name cairn knows (src/collector/mod.rs), enabled, in one
    # collection; the ones not implemented yet only log a warning.
    names="$(tr -d '\n' <"$ROOT/src/collector/mod.rs" | grep -oE 'known!\( *"[a-z_0-9]+"' | sed -E 's/.*"(.*)"/\1/' | sort -u)"
    [[ -n "$names" ]] || fail "no collector names found in src/collector/mod.rs"
    local flags=()
    for i in $names; do
        flags+=("--collector.$i")
    done
    say "strace: cairn collect --once with ${#flags[@]} collectors enabled"
    strace -f -qq -o "$dir/collect.strace" "$bin" "${flags[@]}" collect --once >"$dir/collect.out" 2>"$dir/collect.err" ||
        fail "cairn collect --once failed under strace: $(tail -5 "$dir/collect.err")"

    # The agent: listener, scrapes, the WAL, a remote_write sender that
    # cannot connect, sd_notify, SIGHUP, SIGTERM.
    port="$(free_port)"
    cat >"$dir/cairn.toml" <<EOF
[global]
scrape_interval = "1s"
[web]
listen_address = "127.0.0.1:$port"
[wal]
dir = "$dir/wal"
[[remote_write]]
name = "nowhere"
url = "http://127.0.0.1:9/api/v1/write"
EOF
    notify="$dir/notify.sock"
    python3 - "$notify" "$dir/notify.log" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "a", buffering=1) as log:
    end = time.time() + 20
    while time.time() < end:
        try:
            log.write(s.recv(4096).decode(errors="replace").replace("\n", " ") + "\n")
        except socket.timeout:
            break
EOF
    local listener=$!
    for i in $(seq 50); do [[ -S "$notify" ]] && break; sleep 0.1; done
    NOTIFY_SOCKET="$notify" WATCHDOG_USEC=2000000 \
        strace -f -qq -o "$dir/serve.strace" "$bin" --config "$dir/cairn.toml" "${flags[@]}" >"$dir/serve.log" 2>&1 &
    pid=$!
    for i in $(seq 100); do
        cpid="$(pgrep -P "$pid" || true)"
        [[ -n "$cpid" ]] && curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/metrics" -o "$dir/scrape1" || fail "no /metrics from the agent: $(tail -5 "$dir/serve.log")"
    curl -fsS -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" -o "$dir/scrape2.gz" || fail "gzip scrape failed"
    sleep 2.5
    # sd_notify support comes with the agent's systemd integration; where the
    # binary has it, READY=1 and WATCHDOG=1 must have arrived and the agent
    # must survive SIGHUP and stop with 0 on SIGTERM.
    notified=0
    grep -q 'NOTIFY_SOCKET' "$bin" && notified=1
    kill -HUP "$cpid" 2>/dev/null || true
    sleep 1
    if ((notified)) && ! kill -0 "$cpid" 2>/dev/null; then
        fail "the agent died on SIGHUP: $(tail -5 "$dir/serve.log")"
    fi
    kill -TERM "$cpid" 2>/dev/null || true
    local rc=0
    wait "$pid" || rc=$?
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    if ((notified)); then
        ((rc == 0)) || fail "the agent exited $rc on SIGTERM: $(tail -5 "$dir/serve.log")"
        grep -q 'READY=1' "$dir/notify.log" || fail "no READY=1 on \$NOTIFY_SOCKET"
        grep -q 'WATCHDOG=1' "$dir/notify.log" || fail "no WATCHDOG=1 within 3.5 s with WATCHDOG_USEC=2s"
        say "sd_notify: $(sort "$dir/notify.log" | uniq -c | tr -s ' \n' ' ')"
    else
        say "this binary has no sd_notify support yet: READY/WATCHDOG/SIGHUP not checked"
    fi

    used="$dir/used"
    syscalls_of "$dir/collect.strace" "$dir/serve.strace" >"$used"
    bad="$(comm -23 "$used" "$allowed")"
    say "cairn made $(wc -l <"$used") distinct system calls: $(tr '\n' ' ' <"$used")"
    [[ -z "$bad" ]] || fail "system calls outside the unit's SystemCallFilter= (they would fail with EPERM): $bad"
}

step_dpkg() {
    if [[ -d /run/systemd/system && "${CAIRN_DPKG_TEST:-}" != 1 ]]; then
        say "systemd is running here: skipping the dpkg install test (CAIRN_DPKG_TEST=1 forces it)"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || fail "the dpkg test needs root (CI runs as root)"
    if dpkg-query -W -f='${Status}' cairn 2>/dev/null | grep -q 'install ok'; then
        fail "a cairn package is already installed here; refusing to touch it"
    fi
    if getent passwd cairn >/dev/null; then
        fail "a user cairn already exists here; the test checks the package creates it"
    fi
    need_apt adduser:/usr/sbin/adduser
    local deb wants
    deb="$(build_deb "$(rustc -vV | sed -n 's/^host: //p')")"
    wants=/etc/systemd/system/multi-user.target.wants/cairn.service

    # As in a Docker image: policy-rc.d forbids starting services. Globals:
    # the EXIT trap runs after this function's locals are gone.
    POLICY=/usr/sbin/policy-rc.d
    POLICY_BACKUP=""
    if [[ -e "$POLICY" ]]; then
        POLICY_BACKUP="$WORK/policy-rc.d.orig"
        cp -a "$POLICY" "$POLICY_BACKUP"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    # On any exit: the machine as we found it (our test package purged).
    restore_policy() {
        if [[ -n "$POLICY_BACKUP" ]]; then cp -a "$POLICY_BACKUP" "$POLICY"; else rm -f "$POLICY"; fi
        if dpkg-query -W -f='${Status}' cairn 2>/dev/null | grep -qv 'not-installed'; then
            dpkg --purge cairn >/dev/null 2>&1 || true
        fi
    }
    trap restore_policy EXIT

    running() {
        local p
        for p in /proc/[0-9]*; do
            [[ "$(readlink "$p/exe" 2>/dev/null)" == /usr/bin/cairn ]] && return 0
        done
        return 1
    }

    say "dpkg -i $(basename "$deb")"
    dpkg -i "$deb" >&2 || fail "dpkg -i failed"
    local f
    for f in /usr/bin/cairn /etc/cairn/cairn.toml; do
        [[ -f "$f" ]] || fail "$f missing after install"
    done
    [[ -f /usr/lib/systemd/system/cairn.service || -f /lib/systemd/system/cairn.service ]] ||
        fail "unit missing after install"
    dpkg-query -W -f='${Conffiles}\n' cairn | grep -q '/etc/cairn/cairn.toml' || fail "/etc/cairn/cairn.toml is not a conffile"
    /usr/bin/cairn --version >&2
    /usr/bin/cairn check-config /etc/cairn/cairn.toml >&2 || fail "the shipped config does not pass check-config"
    local pw
    pw="$(getent passwd cairn)" || fail "user cairn not created"
    getent group cairn >/dev/null || fail "group cairn not created"
    local uid home shell
    uid="$(cut -d: -f3 <<<"$pw")"
    home="$(cut -d: -f6 <<<"$pw")"
    shell="$(cut -d: -f7 <<<"$pw")"
    ((uid < 1000)) || fail "cairn is not a system user (uid $uid)"
    [[ "$home" == /var/lib/cairn ]] || fail "cairn's home is $home"
    [[ "$shell" == */nologin ]] || fail "cairn's shell is $shell"
    say "user: $pw"
    [[ -L "$wants" ]] || fail "the unit was not enabled ($wants missing)"
    if running; then fail "cairn was started without systemd"; fi
    # The agent works as its user (what the unit runs, minus the sandbox).
    setpriv --reuid=cairn --regid=cairn --init-groups /usr/bin/cairn collect --once >"$WORK/as-cairn.out" ||
        fail "cairn collect --once as user cairn failed"
    grep -q '^node_load1 ' "$WORK/as-cairn.out" || fail "no node_load1 as user cairn"

    # Upgrade (same version again takes the same path): state and config kept.
    install -d -o cairn -g cairn -m 0700 /var/lib/cairn /var/lib/cairn/wal
    echo keep >/var/lib/cairn/wal/marker
    echo '# local edit' >>/etc/cairn/cairn.toml
    say "dpkg -i again (upgrade path)"
    dpkg -i --force-confold "$deb" >&2 || fail "reinstall failed"
    [[ -f /var/lib/cairn/wal/marker ]] || fail "the WAL did not survive an upgrade"
    grep -q '# local edit' /etc/cairn/cairn.toml || fail "a local config edit did not survive an upgrade"
    if running; then fail "cairn was started by the upgrade without systemd"; fi

    say "dpkg -r cairn"
    dpkg -r cairn >&2 || fail "dpkg -r failed"
    [[ ! -e /usr/bin/cairn ]] || fail "/usr/bin/cairn left after remove"
    [[ -f /etc/cairn/cairn.toml ]] || fail "remove must keep the conffile"
    [[ -f /var/lib/cairn/wal/marker ]] || fail "remove must keep the WAL"
    getent passwd cairn >/dev/null || fail "remove must keep the user"

    say "dpkg --purge cairn"
    dpkg --purge cairn >&2 || fail "dpkg --purge failed"
    for f in /etc/cairn /var/lib/cairn /usr/lib/systemd/system/cairn.service /lib/systemd/system/cairn.service "$wants"; do
        [[ ! -e "$f" && ! -L "$f" ]] || fail "$f left after purge"
    done
    ! getent passwd cairn >/dev/null || fail "user cairn left after purge"
    ! getent group cairn >/dev/null || fail "group cairn left after purge"
    say "dpkg: install, upgrade, remove, purge OK; nothing started"
}

mkdir -p "$WORK"
case "${1:-all}" in
unit) step_unit ;;
syscalls) step_syscalls ;;
arm64) step_arm64 ;;
armhf) step_armhf ;;
dpkg) step_dpkg ;;
all)
    step_unit
    step_syscalls
    step_arm64
    step_armhf
    step_dpkg
    ;;
*) fail "unknown step ${1} (unit, syscalls, arm64, armhf, dpkg, all)" ;;
esac
say "${1:-all}: passed"
