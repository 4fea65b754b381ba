#!/usr/bin/env bash
# End-to-end test of the systemd units against a real systemd, booted in systemd-nspawn.
#
#   bash tests/systemd/nspawn_test.sh DIR     # DIR holds built paxosd and paxosctl
#   bash tests/systemd/nspawn_test.sh --standin   # plumbing only, with a stand-in daemon
#
# Needs root and Debian/Ubuntu (apt-get). It installs systemd-container and debootstrap
# if missing, builds a bookworm rootfs once and caches it as a tarball in
# $PAXOS_NSPAWN_CACHE (default /var/cache/paxos-nspawn), boots it with systemd as PID 1
# (writes go to a tmpfs overlay), installs paxos with systemd/install.sh, and then:
# three replicas start through systemctl (Type=notify, DynamicUser, StateDirectory);
# messages are submitted; the leader's MainPID is killed with kill -9 from the host;
# systemd restarts it (NRestarts +1, new MainPID); it replays its store and catches up;
# submits keep working; every replica's log is identical with each acknowledged message
# exactly once; logs reach journald without colours or timestamps; systemctl stop ends
# each replica cleanly (exit 0, no SIGKILL); a second start finds all state; a rolling
# `install.sh --upgrade` restarts them one at a time. Everything runs with mutual TLS:
# install.sh issues the certificates, the unit hands each replica its key with
# LoadCredential=, and a plaintext client is refused. Finally the container is powered
# off and nothing is left behind (process, mount, cgroup, temp dir).
#
# The container shares the host's network namespace (no --private-network), so the
# replicas listen on the host's 127.0.0.1:7201-7203 and paxosctl runs on the host, as an
# operator's would; install.sh's rolling upgrade runs paxosctl inside the container too.
#
# Environment: PAXOS_NSPAWN_CACHE, PAXOS_NSPAWN_MIRROR (Debian mirror for debootstrap),
# PAXOS_NSPAWN_TIMEOUT_S (hard bound on the whole run, default 900),
# PAXOS_NSPAWN_KEEP_CACHE=0 (delete the cached tarball afterwards),
# PAXOS_NSPAWN_JOURNAL_OUT=FILE (save the container's whole journal there at the end).
set -Eeuo pipefail

if [ -z "${PAXOS_NSPAWN_INNER:-}" ]; then
    # The whole run is bounded; on expiry the trap below still cleans up.
    PAXOS_NSPAWN_INNER=1 exec timeout -k 30 "${PAXOS_NSPAWN_TIMEOUT_S:-900}" bash "$0" "$@"
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE_DIR=${PAXOS_NSPAWN_CACHE:-/var/cache/paxos-nspawn}
SUITE=bookworm
ROOTFS_KEY="$SUITE-minbase-systemd-v2"
TARBALL="$CACHE_DIR/rootfs-$ROOTFS_KEY.tar.gz"
MIRROR=${PAXOS_NSPAWN_MIRROR:-http://deb.debian.org/debian}
NAME="paxos-nspawn-$$"
PORTS=(7201 7202 7203)
N=${#PORTS[@]}
# nspawn runs in cgroups of our own, removed at the end (else it leaves empty payload/
# and supervisor/ cgroups at the root). Hybrid hierarchy (these machines): the named
# systemd v1 hierarchy plus cgroup2 at unified/; pure cgroup2 elsewhere.
if [ -d /sys/fs/cgroup/unified ] || [ -d /sys/fs/cgroup/systemd ]; then
    CGROUPS=()
    for h in unified systemd; do
        [ -d "/sys/fs/cgroup/$h" ] && CGROUPS+=("/sys/fs/cgroup/$h/$NAME")
    done
else
    CGROUPS=("/sys/fs/cgroup/$NAME")
fi

WORK=""
NSPAWN_PID=""
PID1=""
STANDIN=0
passed=0
failed=0
declare -A TIMING=()
TIMING_ORDER=()
T_START=$(date +%s.%N)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
log() { printf '[nspawn_test %s] %s\n' "$(date +%T)" "$*" >&2; }
timing() { # phase seconds
    TIMING[$1]=$2
    TIMING_ORDER+=("$1")
    log "TIMING $1 ${2}s"
}
ok() {
    passed=$((passed + 1))
    log "ok: $*"
}
die() {
    failed=$((failed + 1))
    log "FAIL: $*"
    diagnostics || true
    exit 1
}

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------- arguments, host checks
[ $# -eq 1 ] || { usage >&2; exit 2; }
case "$1" in
    -h|--help) usage; exit 0 ;;
    --standin) STANDIN=1 ;;
    *) BIN_DIR=$(cd "$1" 2>/dev/null && pwd) || { echo "no such directory: $1" >&2; exit 2; } ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "nspawn_test.sh needs root" >&2; exit 2; }
if [ "$STANDIN" -eq 0 ]; then
    for b in paxosd paxosctl; do
        [ -x "$BIN_DIR/$b" ] || { echo "$BIN_DIR/$b missing or not executable" >&2; exit 2; }
    done
fi

# ---------------------------------------------------------------- container helpers
# Run a command inside the container (all its namespaces), bounded in time.
cx() {
    timeout "${CX_TIMEOUT:-30}" nsenter -t "$PID1" -a \
        /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER= \
        SYSTEMD_COLORS=0 "$@"
}
prop() { # unit property
    cx systemctl show -p "$2" --value "$1"
}
# Host PID of a process the container knows as $1: the NSpid line ends with it, in
# the container's PID namespace.
host_pid() {
    local want=$1 ns status p
    ns=$(readlink "/proc/$PID1/ns/pid")
    for status in /proc/[0-9]*/status; do
        p=${status#/proc/}
        p=${p%/status}
        [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
        if awk -v w="$want" '/^NSpid:/ { f = (NF > 2 && $NF == w) } END { exit !f }' "$status" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
# True when something accepts TCP connections on 127.0.0.1:$1 right now.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
diagnostics() {
    [ -n "$PID1" ] && [ -d "/proc/$PID1" ] || return 0
    log "---- diagnostics: unit states"
    CX_TIMEOUT=10 cx systemctl --no-pager --full status 'paxos@*' paxos.target >&2 || true
    local u
    for ((u = 0; u < N; u++)); do
        log "---- journalctl -u paxos@$u (last 40 lines)"
        CX_TIMEOUT=10 cx journalctl --no-pager -n 40 -u "paxos@$u" >&2 || true
    done
}

# ---------------------------------------------------------------- cleanup (always)
leftovers() {
    local found=0 p
    for p in /proc/[0-9]*; do
        if grep -qs "/$NAME\(/\|\$\)" "$p/cgroup" 2>/dev/null; then
            log "leftover process ${p#/proc/}: $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
            found=1
        fi
    done
    if [ -n "$WORK" ] && grep -qs " $WORK" /proc/self/mounts; then
        log "leftover mounts under $WORK"
        found=1
    fi
    for cg in "${CGROUPS[@]}"; do
        if [ -e "$cg" ]; then
            log "leftover cgroup $cg"
            found=1
        fi
    done
    if [ -n "$WORK" ] && [ -e "$WORK" ]; then
        log "leftover directory $WORK"
        found=1
    fi
    return "$found"
}
kill_cgroup_procs() {
    local cg p
    for cg in "${CGROUPS[@]}"; do
        [ -d "$cg" ] || continue
        while read -r p; do
            [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
        done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
    done
}
cleanup() {
    local rc=$? t i
    trap - EXIT INT TERM
    set +e # every step below must run, whatever fails
    t=$(now)
    if [ -n "${BG_PID:-}" ]; then
        kill -9 "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
    fi
    if [ -n "${PAXOS_NSPAWN_JOURNAL_OUT:-}" ] && [ -n "$PID1" ] && [ -d "/proc/$PID1" ]; then
        CX_TIMEOUT=20 cx journalctl --no-pager -o short-precise >"$PAXOS_NSPAWN_JOURNAL_OUT" 2>&1
        log "container journal saved to $PAXOS_NSPAWN_JOURNAL_OUT"
    fi
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        if [ -n "$PID1" ] && kill -0 "$PID1" 2>/dev/null; then
            kill -s SIGRTMIN+4 "$PID1" 2>/dev/null || true # poweroff
        fi
        for ((i = 0; i < 200; i++)); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            log "container did not power off in 20 s: SIGKILL"
            [ -n "$PID1" ] && kill -9 "$PID1" 2>/dev/null || true
            sleep 1
            kill -9 "$NSPAWN_PID" 2>/dev/null || true
        fi
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    kill_cgroup_procs
    for ((i = 0; i < 50; i++)); do
        [ -z "$(find "${CGROUPS[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
        sleep 0.1
    done
    for cg in "${CGROUPS[@]}"; do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    if [ -n "$WORK" ]; then
        # Nothing should be mounted there (nspawn mounts in its own namespace); be sure.
        grep -s " $WORK" /proc/self/mounts | awk '{ print $2 }' | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        grep -qs " $WORK" /proc/self/mounts || rm -rf --one-file-system "$WORK"
    fi
    if [ "${PAXOS_NSPAWN_KEEP_CACHE:-1}" = 0 ]; then rm -f "$TARBALL"; fi
    if ! leftovers; then
        log "FAIL: cleanup left something behind"
        failed=$((failed + 1))
        [ "$rc" -ne 0 ] || rc=1
    elif [ "$rc" -eq 0 ]; then
        ok "teardown left no process, mount, cgroup or directory behind"
    fi
    timing teardown "$(since "$t")"
    timing total "$(since "$T_START")"
    log "timings:"
    for k in "${TIMING_ORDER[@]}"; do printf '  %-28s %8ss\n' "$k" "${TIMING[$k]}" >&2; done
    if [ "$rc" -ne 0 ]; then
        [ "$failed" -gt 0 ] || failed=1
        log "FAILED (exit $rc); see the messages above"
    fi
    echo "systemd: $passed passed, $failed failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time bound reached?)"; exit 143' TERM

# ---------------------------------------------------------------- phase: verify units
t=$(now)
out=$(bash "$here/verify_units.sh" 2>&1) || die "systemd-analyze verify: $out"
[ -z "$out" ] || die "systemd-analyze verify printed: $out"
ok "systemd-analyze verify is silent on paxos@.service and paxos.target"
timing verify "$(since "$t")"

# ---------------------------------------------------------------- phase: host tools
t=$(now)
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    timeout 300 apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends \
        "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi
timing apt_install "$(since "$t")"

# ---------------------------------------------------------------- phase: rootfs cache
t=$(now)
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
timeout 900 flock 9 || die "could not lock $CACHE_DIR"
if [ ! -s "$TARBALL" ]; then
    build="$CACHE_DIR/build.$$"
    rm -rf "$build"
    log "debootstrap $SUITE from $MIRROR (cached afterwards as $TARBALL)"
    if ! timeout 600 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
        "$SUITE" "$build" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -20 "$CACHE_DIR/debootstrap.log" >&2
        rm -rf "$build"
        die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"
    fi
    # Quiet container: no timers, no gettys, no first-boot questions; smaller tarball.
    for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
        fstrim.timer; do
        [ -e "$build/lib/systemd/system/$u" ] && timeout 30 systemctl --root="$build" -q disable "$u" || true
    done
    timeout 30 systemctl --root="$build" -q mask console-getty.service getty@.service \
        systemd-firstboot.service || die "masking gettys in the rootfs failed"
    rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/*
    timeout 600 tar --numeric-owner -C "$build" -czf "$TARBALL.tmp" . || die "tar of rootfs failed"
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$build"
    timing debootstrap "$(since "$t")"
else
    timing debootstrap_cached "$(since "$t")"
fi
flock -u 9
exec 9>&-

# ---------------------------------------------------------------- phase: stage files
t=$(now)
WORK=$(mktemp -d /var/tmp/paxos-nspawn.XXXXXX)
mkdir -p "$WORK/rootfs" "$WORK/stage/bin" "$WORK/host"
# A tmpfs of our own: extracting there takes 1-2 s instead of about 9 s on disk.
mount -t tmpfs -o size=1g,mode=0755 paxos-nspawn-rootfs "$WORK/rootfs" ||
    log "note: no tmpfs for the rootfs, extracting to disk"
timeout 300 tar --numeric-owner -C "$WORK/rootfs" -xzf "$TARBALL" || die "extracting $TARBALL failed"
timing extract_rootfs "$(since "$t")"

cp -r "$repo/systemd" "$WORK/stage/systemd"
if [ "$STANDIN" -eq 1 ]; then
    # Build the stand-in with rustc alone; a shim stands in for the tracing crate.
    printf '#[macro_export]\nmacro_rules! warn { ($($t:tt)*) => { eprintln!("warn: {}", stringify!($($t)*)) }; }\n' \
        >"$WORK/tracing_shim.rs"
    timeout 120 rustc --edition 2021 --crate-type rlib --crate-name tracing \
        -o "$WORK/libtracing.rlib" "$WORK/tracing_shim.rs" || die "building the tracing shim failed"
    timeout 300 rustc --edition 2021 -O -A unused --extern tracing="$WORK/libtracing.rlib" \
        -o "$WORK/stage/bin/paxosd" "$here/standin.rs" || die "building the stand-in failed"
    printf '#!/bin/sh\necho "stand-in paxosctl: $*" >&2\nexit 1\n' >"$WORK/stage/bin/paxosctl"
    chmod +x "$WORK/stage/bin/paxosctl"
else
    cp "$BIN_DIR/paxosd" "$BIN_DIR/paxosctl" "$WORK/stage/bin/"
fi
# The shipped config with this test's ports; the host-side copy keeps its own dirs.
sed -e "s/127\.0\.0\.1:7001/127.0.0.1:${PORTS[0]}/; s/127\.0\.0\.1:7002/127.0.0.1:${PORTS[1]}/; s/127\.0\.0\.1:7003/127.0.0.1:${PORTS[2]}/" \
    "$repo/systemd/config.toml" >"$WORK/stage/config.toml"
for p in "${PORTS[@]}"; do
    grep -q "127.0.0.1:$p\"" "$WORK/stage/config.toml" || die "config.toml does not use port $p after substitution"
done
sed -e "s#^data_dir = .*#data_dir = \"$WORK/host/data\"#; s#^log_dir = .*#log_dir = \"$WORK/host/logs\"#" \
    "$WORK/stage/config.toml" >"$WORK/host/config.toml"
HOSTCFG=$WORK/host/config.toml
for p in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is already in use on the host; stop whatever listens there"
    fi
done

# ---------------------------------------------------------------- phase: boot
t=$(now)
mkdir -p "${CGROUPS[@]}" || die "cannot create cgroups ${CGROUPS[*]}"
(
    for cg in "${CGROUPS[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
    exec systemd-nspawn -q -D "$WORK/rootfs" -M "$NAME" --volatile=overlay \
        --register=no --keep-unit --console=passive --link-journal=no \
        --bind-ro="$WORK/stage:/opt/paxos" --boot
) >"$WORK/nspawn.log" 2>&1 &
NSPAWN_PID=$!
deadline=$((SECONDS + 30))
while [ -z "$PID1" ]; do
    kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$WORK/nspawn.log" >&2; die "systemd-nspawn exited during boot"; }
    for c in $(cat "/proc/$NSPAWN_PID/task/$NSPAWN_PID/children" 2>/dev/null); do
        [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && PID1=$c
    done
    [ -n "$PID1" ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "no systemd PID 1 under systemd-nspawn after 30 s"
    sleep 0.1
done
deadline=$((SECONDS + 60))
while :; do
    state=$(CX_TIMEOUT=5 cx systemctl is-system-running 2>/dev/null || true)
    case "$state" in
        running) break ;;
        degraded)
            log "container is degraded; failed units: $(cx systemctl --failed --no-legend --plain | awk '{ print $1 }' | tr '\n' ' ')"
            break
            ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || die "container not up after 60 s (state: '$state')"
    sleep 0.2
done
timing boot "$(since "$t")"
ok "container booted: systemd $(cx systemctl --version | awk 'NR == 1 { print $2 }') as PID 1 (host pid $PID1)"

# ---------------------------------------------------------------- phase: install + start
t=$(now)
if [ "$STANDIN" -eq 1 ]; then
    # The stand-in speaks no TLS: no certificates, only the files LoadCredential= needs.
    cx mkdir -p /etc/paxos/tls
    for ((u = 0; u < N; u++)); do cx sh -c "echo stand-in >/etc/paxos/tls/replica-$u.key && chmod 600 /etc/paxos/tls/replica-$u.key"; done
    cx bash /opt/paxos/systemd/install.sh --bin-dir /opt/paxos/bin --config /opt/paxos/config.toml --no-certs >&2 ||
        die "install.sh failed inside the container"
else
    cx bash /opt/paxos/systemd/install.sh --bin-dir /opt/paxos/bin --config /opt/paxos/config.toml >&2 ||
        die "install.sh failed inside the container"
    # install.sh issued the certificates; the keys are root's alone.
    for ((u = 0; u < N; u++)); do
        k=/etc/paxos/tls/replica-$u.key
        [ "$(cx stat -c '%a %U' "$k")" = "600 root" ] || die "$k is $(cx stat -c '%a %U' "$k"), not 600 root"
        cx test -s "/etc/paxos/tls/replica-$u.pem" || die "install.sh issued no /etc/paxos/tls/replica-$u.pem"
    done
    # paxosctl on the host presents the client certificate install.sh issued.
    mkdir -p "$WORK/host/tls"
    for f in ca.pem client.pem client.key; do cx cat "/etc/paxos/tls/$f" >"$WORK/host/tls/$f"; done
    chmod 600 "$WORK/host/tls/client.key"
    sed -i -e "s#/etc/paxos/tls/#$WORK/host/tls/#" "$HOSTCFG"
    ok "install.sh issued a CA and certificates under /etc/paxos/tls, keys mode 600 root"
fi
for f in /usr/local/bin/paxosd /usr/local/bin/paxosctl /etc/paxos/config.toml \
    /etc/systemd/system/paxos@.service /etc/systemd/system/paxos.target; do
    cx test -e "$f" || die "install.sh did not install $f"
done
for ((u = 0; u < N; u++)); do
    [ "$(cx systemctl is-enabled "paxos@$u.service")" = enabled ] || die "paxos@$u.service not enabled by install.sh"
done
ok "install.sh installed binaries, config and units, and enabled paxos@0..$((N - 1))"
timing install "$(since "$t")"

t=$(now)
CX_TIMEOUT=60 cx systemctl enable --now paxos.target || die "systemctl enable --now paxos.target failed"
declare -A MAINPID=() HOSTPID=()
for ((u = 0; u < N; u++)); do
    unit="paxos@$u.service"
    [ "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)" = active/running ] ||
        die "$unit is $(prop "$unit" ActiveState)/$(prop "$unit" SubState) after the target started"
    port_open "${PORTS[$u]}" || die "$unit is active (READY=1) but port ${PORTS[$u]} is not accepting"
    MAINPID[$u]=$(prop "$unit" MainPID)
    HOSTPID[$u]=$(host_pid "${MAINPID[$u]}") || die "no host pid for $unit MainPID ${MAINPID[$u]}"
done
timing start_3_replicas "$(since "$t")"
ok "systemctl enable --now paxos.target: $N replicas active (READY=1 received) with ports bound, MainPIDs ${MAINPID[*]}"

# The hardening really applies: dynamic non-root user that owns its state, no new
# privileges, seccomp, no capabilities.
for ((u = 0; u < N; u++)); do
    st=/proc/${HOSTPID[$u]}/status
    read -r _ ruid euid _ _ <<<"$(grep '^Uid:' "$st")"
    [ "$ruid" = "$euid" ] && [ "$ruid" -ge 61184 ] && [ "$ruid" -le 65519 ] ||
        die "paxos@$u runs as uid $ruid/$euid, not a dynamic user (61184-65519)"
    grep -q '^NoNewPrivs:[[:space:]]*1' "$st" || die "paxos@$u lacks NoNewPrivs"
    grep -q '^Seccomp:[[:space:]]*2' "$st" || die "paxos@$u has no seccomp filter"
    grep -q '^CapEff:[[:space:]]*0000000000000000' "$st" || die "paxos@$u has effective capabilities"
    owner=$(cx stat -L -c %u "/var/lib/paxos/node-$u") || die "no /var/lib/paxos/node-$u"
    [ "$owner" = "$ruid" ] || die "/var/lib/paxos/node-$u owned by $owner, replica runs as $ruid"
    [ "$(prop "paxos@$u.service" LimitNOFILE)" = 65536 ] || die "LimitNOFILE not applied"
done
[ "$(cx readlink /var/lib/paxos)" = private/paxos ] || die "/var/lib/paxos is not the DynamicUser StateDirectory"
ok "replicas run as dynamic user $ruid owning /var/lib/paxos/node-*, NoNewPrivs, seccomp, no capabilities"

if [ "$STANDIN" -eq 0 ]; then
    # TLS: each replica got its key as a credential and serves TLS only.
    for ((u = 0; u < N; u++)); do
        cx journalctl --no-pager -u "paxos@$u.service" | grep -q 'plaintext' &&
            die "paxos@$u logged that it runs in plaintext"
        cx test -s "/run/credentials/paxos@$u.service/tls-key" || die "paxos@$u has no tls-key credential"
    done
    sed '/^\[tls\]/,$d' "$HOSTCFG" >"$WORK/host/plaintext.toml"
    if out=$(timeout 20 "$WORK/stage/bin/paxosctl" --config "$WORK/host/plaintext.toml" submit --timeout 3 plaintext-probe 2>&1); then
        die "a plaintext client got an answer from the TLS replicas: $out"
    fi
    grep -q TLS <<<"$out" || die "a plaintext client's error does not name TLS: $out"
    ok "replicas serve mutual TLS only (key via LoadCredential=); a plaintext client is refused with an error naming TLS"
fi

# ---------------------------------------------------------------- client helpers
ACKED=$WORK/acked # one "id body" a line
: >"$ACKED"
paxosctl() { timeout "${CTL_TIMEOUT:-20}" "$WORK/stage/bin/paxosctl" --config "$HOSTCFG" "$@"; }
json_field() { # line field -> raw value (strings unquoted)
    sed -n "s/.*\"$2\":\(\"[^\"]*\"\|\[[^]]*\]\|[^,}]*\).*/\1/p" <<<"$1" | tr -d '"'
}
submit() { # body
    local out id
    out=$(paxosctl submit --json "$1" 2>"$WORK/submit.err") ||
        die "paxosctl submit '$1' failed: $(cat "$WORK/submit.err")"
    id=$(json_field "$out" id)
    [ -n "$id" ] && [ -n "$(json_field "$out" slot)" ] || die "paxosctl submit printed '$out'"
    echo "$id $1" >>"$ACKED"
}
leader() { # prints the uid of the replica that says it leads, or fails
    local out
    out=$(CTL_TIMEOUT=10 paxosctl status --json 2>/dev/null) || return 1
    json_field "$(grep '"role":"leader"' <<<"$out" | head -1)" uid | grep .
}
wait_leader() {
    local deadline=$((SECONDS + ${1:-30})) l
    until l=$(leader); do
        [ "$SECONDS" -lt "$deadline" ] || die "no leader after ${1:-30} s: $(CTL_TIMEOUT=10 paxosctl status --json 2>&1)"
        sleep 0.2
    done
    echo "$l"
}
dump() { # uid
    CTL_TIMEOUT=20 paxosctl dump-log --uid "$1" --json
}
# True when every replica's dump-log is identical and holds each acknowledged id once.
converged() {
    local u msgs
    for ((u = 0; u < N; u++)); do
        dump "$u" >"$WORK/dump.$u" 2>"$WORK/dump.$u.err" || return 1
    done
    for ((u = 1; u < N; u++)); do
        cmp -s "$WORK/dump.0" "$WORK/dump.$u" || return 1
    done
    grep '"kind":"msg"' "$WORK/dump.0" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | sort >"$WORK/msg_ids"
    [ -z "$(uniq -d "$WORK/msg_ids")" ] || return 1
    awk '{ print $1 }' "$ACKED" | sort >"$WORK/acked_ids"
    [ -z "$(comm -23 "$WORK/acked_ids" "$WORK/msg_ids")" ] || return 1
}
wait_converged() { # seconds
    local deadline=$((SECONDS + $1)) u
    until converged; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            for ((u = 0; u < N; u++)); do
                log "dump-log --uid $u: $(wc -l <"$WORK/dump.$u" 2>/dev/null) lines; $(head -c 300 "$WORK/dump.$u.err" 2>/dev/null)"
            done
            log "acknowledged but missing from replica 0: $(comm -23 "$WORK/acked_ids" "$WORK/msg_ids" 2>/dev/null | head -5 | tr '\n' ' ')"
            log "duplicates on replica 0: $(uniq -d "$WORK/msg_ids" 2>/dev/null | head -5 | tr '\n' ' ')"
            die "replicas did not converge within $1 s"
        fi
        sleep 0.3
    done
}

# ---------------------------------------------------------------- phase: workload, kill -9
if [ "$STANDIN" -eq 0 ]; then
    t=$(now)
    L=$(wait_leader 30)
    [ "$L" = 0 ] || log "note: fresh cluster elected uid $L, not 0"
    for i in $(seq 1 20); do submit "before-kill-$i"; done
    timing submit_20 "$(since "$t")"
    ok "20 messages acknowledged by leader uid $L"
else
    L=0
    for p in "${PORTS[@]}"; do
        reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p; head -1 <&3") || die "no answer on port $p"
        [[ "$reply" == "standin uid "* ]] || die "port $p answered '$reply'"
    done
    ok "stand-ins answer on ${PORTS[*]} from the host's loopback"
fi

unit="paxos@$L.service"
old_main=${MAINPID[$L]}
old_host=${HOSTPID[$L]}
old_restarts=$(prop "$unit" NRestarts)
BG_PID=""
if [ "$STANDIN" -eq 0 ]; then
    # A client keeps submitting across the kill: every one must be acknowledged (the
    # new leader takes over) and land in the log exactly once.
    (
        for i in $(seq 1 40); do
            if out=$(paxosctl submit --json "during-kill-$i" 2>>"$WORK/during.err"); then
                echo "$(json_field "$out" id) during-kill-$i" >>"$WORK/during.acked"
            else
                echo "during-kill-$i" >>"$WORK/during.failed"
            fi
        done
    ) &
    BG_PID=$!
    sleep 0.3
fi
log "kill -9 leader uid $L: MainPID $old_main in the container, host pid $old_host, NRestarts $old_restarts"
t_kill=$(now)
kill -9 "$old_host" || die "kill -9 $old_host failed"
deadline=$((SECONDS + 20))
while :; do
    new_main=$(prop "$unit" MainPID)
    restarts=$(prop "$unit" NRestarts)
    active=$(prop "$unit" ActiveState)
    if [ "$restarts" = $((old_restarts + 1)) ] && [ "$new_main" != 0 ] &&
        [ "$new_main" != "$old_main" ] && [ "$active" = active ]; then
        break
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$unit not restarted within 20 s (NRestarts $restarts, MainPID $new_main, $active)"
    sleep 0.05
done
timing restart_after_kill9 "$(since "$t_kill")"
t_restarted=$(now)
port_open "${PORTS[$L]}" || die "$unit is active again but port ${PORTS[$L]} is not accepting"
cx journalctl --no-pager -u "$unit" | grep -q 'code=killed, status=9/KILL' ||
    die "journal of $unit lacks 'code=killed, status=9/KILL'"
MAINPID[$L]=$new_main
HOSTPID[$L]=$(host_pid "$new_main") || die "no host pid for new MainPID $new_main"
ok "systemd restarted $unit after kill -9: NRestarts $old_restarts -> $restarts, MainPID $old_main -> $new_main, ready again"

if [ "$STANDIN" -eq 0 ]; then
    # Replay: the restarted replica answers again with at least what it had decided.
    before=$(wc -l <"$ACKED")
    deadline=$((SECONDS + 30))
    while :; do
        st=$(CTL_TIMEOUT=5 paxosctl status --json 2>/dev/null | grep "\"uid\":$L[,}]" || true)
        if [ "$(json_field "$st" reachable)" = true ] && [ "$(json_field "$st" decided)" -ge "$before" ]; then
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "restarted uid $L not back with >= $before decided within 30 s: '$st'"
        sleep 0.1
    done
    timing replay_rejoin_after_restart "$(since "$t_restarted")"
    ok "restarted uid $L replayed its store and answers: $st"

    wait "$BG_PID" || true
    BG_PID=""
    timing concurrent_client_done "$(since "$t_kill")"
    [ ! -s "$WORK/during.failed" ] ||
        die "submits failed across the leader's kill: $(tr '\n' ' ' <"$WORK/during.failed"); stderr: $(tail -3 "$WORK/during.err")"
    cat "$WORK/during.acked" >>"$ACKED"
    ok "a client submitting across the kill got all 40 acknowledged (new leader uid $(wait_leader 10))"
    for i in $(seq 1 20); do submit "after-kill-$i"; done
    ok "20 more messages acknowledged after the kill"

    # Catch-up: the restarted replica's decided prefix reaches the others', and every
    # replica's log is the same, with each acknowledged message once.
    t=$(now)
    deadline=$((SECONDS + 60))
    while :; do
        out=$(CTL_TIMEOUT=5 paxosctl status --json 2>/dev/null || true)
        mine=$(json_field "$(grep "\"uid\":$L[,}]" <<<"$out")" decided)
        max=$(sed -n 's/.*"decided":\([0-9]*\).*/\1/p' <<<"$out" | sort -n | tail -1)
        [ -n "$mine" ] && [ -n "$max" ] && [ "$mine" -ge "$max" ] && break
        [ "$SECONDS" -lt "$deadline" ] || die "uid $L did not catch up within 60 s: $out"
        sleep 0.1
    done
    wait_converged 60
    timing catch_up "$(since "$t")"
    timing kill9_to_converged "$(since "$t_kill")"
    ok "all $N replicas' dump-log identical ($(wc -l <"$WORK/dump.0") entries), each of $(wc -l <"$ACKED") acknowledged messages once"
else
    cx grep -c '^start' "/var/lib/paxos/node-$L/starts" | grep -qx 2 || die "stand-in did not record its second start"
    ok "restarted stand-in found its state dir"
fi

# ---------------------------------------------------------------- journald format
for ((u = 0; u < N; u++)); do
    cx journalctl --no-pager -o cat -u "paxos@$u" _PID="${MAINPID[$u]}" >"$WORK/journal.$u" ||
        die "journalctl -u paxos@$u failed"
    [ -s "$WORK/journal.$u" ] || die "no journal lines from paxos@$u's daemon"
    if grep -q $'\e\[' "$WORK/journal.$u"; then
        die "ANSI colour codes in journald: $(grep -m1 $'\e\[' "$WORK/journal.$u" | cat -v)"
    fi
    if grep -Eq '^[[:space:]]*[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}' "$WORK/journal.$u"; then
        die "timestamps duplicated in journald: $(grep -Em1 '^[[:space:]]*[0-9]{4}-[0-9]{2}-' "$WORK/journal.$u")"
    fi
done
ok "journald lines carry no ANSI colours and no timestamps of their own, e.g.: $(head -1 "$WORK/journal.0")"
if [ "$STANDIN" -eq 0 ]; then
    # Each line carries its syslog priority (<4> warning, <6> info), which journald strips:
    # after the leader's kill -9 its peers warned that their link went down.
    cx journalctl --no-pager -o cat -p warning -u 'paxos@*' >"$WORK/journal.warnings" ||
        die "journalctl -p warning failed"
    grep -q 'peer link down' "$WORK/journal.warnings" ||
        die "journalctl -p warning shows no 'peer link down' warning after the kill -9"
    if grep -Eq '(^|[[:space:]])INFO[[:space:]]' "$WORK/journal.warnings"; then
        die "journalctl -p warning shows info lines: $(grep -Em1 'INFO' "$WORK/journal.warnings")"
    fi
    if grep -Eq '^<[0-9]>' "$WORK/journal.0"; then
        die "priority prefixes reached the journal text: $(grep -Em1 '^<[0-9]>' "$WORK/journal.0")"
    fi
    ok "journald priorities: journalctl -p warning has the peers' warnings and no info lines"
fi
nlogs=$(cx find -L /var/log/paxos -type f | wc -l)
[ "$nlogs" -gt 0 ] || die "no log files under /var/log/paxos (log_dir in config.toml)"
ok "$nlogs rolling log file(s) under /var/log/paxos as config.toml's log_dir says"

# ---------------------------------------------------------------- phase: clean stop
t=$(now)
[ "$STANDIN" -eq 1 ] || cp "$WORK/dump.0" "$WORK/dump.before-stop"
CX_TIMEOUT=60 cx systemctl stop paxos.target || die "systemctl stop paxos.target failed"
for ((u = 0; u < N; u++)); do
    unit="paxos@$u.service"
    # A clean stop hands off first (the leader's final decisions reach the followers):
    # bounded by 2 x timeout_ms in paxosd; give it a few seconds here.
    for _ in $(seq 100); do
        [ "$(prop "$unit" ActiveState)" = deactivating ] || break
        sleep 0.1
    done
    s="$(prop "$unit" ActiveState) $(prop "$unit" Result) $(prop "$unit" ExecMainCode) $(prop "$unit" ExecMainStatus)"
    # ExecMainCode 1 = CLD_EXITED (a normal exit), status 0.
    [ "$s" = "inactive success 1 0" ] ||
        die "$unit did not stop cleanly (ActiveState Result ExecMainCode ExecMainStatus = $s)"
    if cx journalctl --no-pager -u "$unit" | grep -Eq 'timed out|Killing process|status=9/KILL.*stop'; then
        die "$unit needed SIGKILL to stop: $(cx journalctl --no-pager -u "$unit" | grep -E 'timed out|Killing' | head -2)"
    fi
    kill -0 "${HOSTPID[$u]}" 2>/dev/null && die "paxos@$u's process ${HOSTPID[$u]} still alive after stop"
done
timing stop_all "$(since "$t")"
ok "systemctl stop paxos.target: every replica exited 0 on SIGTERM (after the hand-off), no SIGKILL"

# ---------------------------------------------------------------- phase: second start
t=$(now)
CX_TIMEOUT=60 cx systemctl start paxos.target || die "second systemctl start paxos.target failed"
for ((u = 0; u < N; u++)); do
    [ "$(prop "paxos@$u.service" ActiveState)" = active ] || die "paxos@$u not active after the second start"
done
if [ "$STANDIN" -eq 0 ]; then
    wait_leader 30 >/dev/null
    timing second_start_to_leader "$(since "$t")"
    for ((u = 0; u < N; u++)); do
        dump "$u" >"$WORK/dump.again.$u" || die "dump-log --uid $u after restart failed"
        [ "$(grep -c '"kind":"msg"' "$WORK/dump.again.$u")" -ge "$(grep -c '"kind":"msg"' "$WORK/dump.before-stop")" ] ||
            die "replica $u lost messages across stop/start"
        head -n "$(wc -l <"$WORK/dump.before-stop")" "$WORK/dump.again.$u" | cmp -s - "$WORK/dump.before-stop" ||
            die "replica $u's log after restart does not begin with its log before the stop"
    done
    for i in 1 2 3; do submit "after-restart-$i"; done
    wait_converged 30
    ok "second start found all state: logs intact, 3 more messages acknowledged, replicas identical"
else
    timing second_start "$(since "$t")"
    for ((u = 0; u < N; u++)); do
        [ "$(cx grep -c '^stop' "/var/lib/paxos/node-$u/starts")" -ge 1 ] || die "stand-in $u did not record its stop"
    done
    ok "second start: state dirs intact"
fi

# ---------------------------------------------------------------- phase: rolling upgrade
t=$(now)
if [ "$STANDIN" -eq 0 ]; then
    CX_TIMEOUT=200 cx bash /opt/paxos/systemd/install.sh --upgrade --bin-dir /opt/paxos/bin >&2 ||
        die "install.sh --upgrade (rolling restart) failed"
    submit "after-upgrade"
    wait_converged 30
    ok "install.sh --upgrade restarted the replicas one at a time; log still identical everywhere"
    timing rolling_upgrade "$(since "$t")"
fi

t=$(now)
CX_TIMEOUT=60 cx systemctl stop paxos.target || die "final systemctl stop failed"
timing final_stop "$(since "$t")"
