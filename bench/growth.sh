#!/usr/bin/env bash
# Growth benchmark (issue 10): what a replica costs as the chat log grows. One local
# 3-replica cluster (release binaries, fsync on, mutual TLS), filled with
# `paxosctl bench --clients 256 --size 100` until the leader's decided prefix reaches each
# point in turn (points ascending; the log keeps growing from one point to the next).
# At each point, with no load unless said otherwise:
#   1. every replica's RSS (VmRSS; as the fill stops and SETTLE_S later) and store size
#      (du -sb data/node-UID), bytes per slot
#      and the payload ratio disk / (slots * (SIZE + 24)), 24 = the message id;
#   2. restart, idle: one follower `kill -9`ed and restarted; seconds from the restart to
#      serving (its client port answers `paxosctl status` for its uid) and to caught up
#      (its decided prefix equals the leader's; no write load, the leader's is fixed);
#   3. catch-up under load: a 256-client bench runs throughout; the cluster's write rate
#      (leader's decided-prefix delta) is measured for BASELINE_S seconds, then a follower
#      is `kill -9`ed, the load writes CATCHUP slots more, the follower is restarted and
#      the script measures how fast its decided prefix reaches the leader's prefix as of
#      the restart: entries = that prefix - its own before the kill, entries/s counting
#      from the restart and from its first answer (null if it had caught up before it
#      answered), polled every ~0.05 s + one status round (coarse below ~100k entries), and the cluster's
#      write rate meanwhile against the rate before; also the time until its lag is back
#      within 2 x CLIENTS slots (the pipeline) while the load goes on;
#   4. `paxosctl dump-log --uid LEADER --json` of the whole log (idle): its maximum RSS
#      (/usr/bin/time -v, else VmHWM polled from /proc), the leader's RSS before and its
#      peak during the dump (VmRSS every 50 ms), lines and seconds.
# One JSON line per point on stdout; progress and comments on stderr. Issue-10 goals:
# RSS at 10M <= 1.25x RSS at 1M and <= 200 MiB, disk <= 2x payload, restart to caught up
# <= 1 s at 10M, catch-up >= 100k entries/s with the cluster at >= 50% of its rate.
#
#   bash bench/growth.sh [POINTS...]            # default 1000000 5000000 10000000
#   bash bench/growth.sh 100000 300000          # a quick run (a few minutes)
#   CATCHUP=500000 KEEP=1 bash bench/growth.sh 1000000
#
# Knobs (environment):
#   SIZE=100             message bytes          CLIENTS=256   bench clients
#   CATCHUP=             slots written while the follower is down (default per point:
#                        min(500000, POINT / 2))
#   BASELINE_S=10        seconds of load over which the normal write rate is measured
#   SETTLE_S=5           seconds idle before a point's RSS (rss_mib; rss_mib_loaded is
#                        read as the load stops; a replica checkpoints and trims after
#                        3 quiet seconds)
#   CATCHUP_TIMEOUT_S=600  longest a restarted follower may take to catch up
#   BASE_PORT=7961       replicas on BASE_PORT..BASE_PORT+2 (loopback)
#   PAXOS_TLS=1          0 = gen-config --no-tls
#   EST_BYTES_PER_SLOT=400  disk estimate per slot per replica for the free-space check
#                        before the start (main, log in RAM, measures 520-640 B/slot;
#                        the goal is <= 248); every fill step and every point then
#                        recheck with the measured figure and stop before the disk fills
#   MIN_MEM_AVAILABLE_MIB=1024  stop filling (a failure) when MemAvailable falls below
#   WORK_PARENT=/tmp     where the temp dir goes   KEEP=1 keep it after a success
#   BIN=target/release   where paxosd and paxosctl are (e.g. another worktree's)
#
# Time and space. Filling runs at the cluster's bench rate (6-12k slots/s on the 2-core
# dev machine): ~2-3 min to 1M, ~10-15 min more to 5M, ~10-15 min more to 10M, plus per
# point the catch-up phase (CATCHUP / rate, ~1 min) and the dump (~10 s per 1M slots):
# about 40-60 min for the default points. Disk: 3 replicas x the largest point plus the
# catch-up slots (~11.5M slots) x bytes per slot: ~22 GiB at main's ~640 B/slot, ~8 GiB at
# the goal (2 x 124 B). The script refuses to start when `df` shows less free space than
# its estimate (x 1.1, default 14 GiB for the default points), and rechecks with the
# measured bytes per slot after every fill step (for the point being filled) and after
# every point (for all the points left), failing with a message before the disk is full.
# RAM: main holds the log in memory (~880 B/slot per replica): 10M slots x 3 replicas do
# not fit in 24 GiB; the MemAvailable guard stops the fill first.
#
# Needs BIN/paxosd and BIN/paxosctl built
# (`flock /tmp/paxos-cargo.lock cargo build --release --bins`); never builds. Every
# daemon runs under `timeout` and is killed by PID on exit; every client call is bounded.
# On failure the temp dir (data, logs) is kept and named on stderr.
set -euo pipefail

SIZE=${SIZE:-100}
CLIENTS=${CLIENTS:-256}
CATCHUP=${CATCHUP:-}
BASELINE_S=${BASELINE_S:-10}
SETTLE_S=${SETTLE_S:-5}
CATCHUP_TIMEOUT_S=${CATCHUP_TIMEOUT_S:-600}
BASE_PORT=${BASE_PORT:-7961}
PAXOS_TLS=${PAXOS_TLS:-1}
EST_BYTES_PER_SLOT=${EST_BYTES_PER_SLOT:-400}
MIN_MEM_AVAILABLE_MIB=${MIN_MEM_AVAILABLE_MIB:-1024}
WORK_PARENT=${WORK_PARENT:-${TMPDIR:-/tmp}}
KEEP=${KEEP:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO/target/release}
PAXOSD=$BIN/paxosd
PAXOSCTL=$BIN/paxosctl

log() { printf '# growth: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
isnum() { [[ $1 =~ ^[0-9]+$ ]]; }

points=("$@")
[[ ${#points[@]} -gt 0 ]] || points=(1000000 5000000 10000000)
for p in "${points[@]}"; do
    if ! isnum "$p" || ((p == 0)); then log "error: point '$p' is not a positive slot count"; exit 2; fi
done
mapfile -t points < <(printf '%s\n' "${points[@]}" | sort -n -u)
for v in SIZE CLIENTS BASELINE_S SETTLE_S CATCHUP_TIMEOUT_S BASE_PORT EST_BYTES_PER_SLOT MIN_MEM_AVAILABLE_MIB; do
    isnum "${!v}" || { log "error: $v=${!v} is not a number"; exit 2; }
done
[[ -z $CATCHUP ]] || isnum "$CATCHUP" || { log "error: CATCHUP=$CATCHUP is not a number"; exit 2; }
for b in "$PAXOSD" "$PAXOSCTL"; do
    [[ -x $b ]] || die "$b missing: flock /tmp/paxos-cargo.lock cargo build --release --bins"
done
for t in jq awk timeout; do command -v "$t" >/dev/null || die "needs $t"; done

catchup_for() { # catchup_for POINT -> slots written while the follower is down
    if [[ -n $CATCHUP ]]; then echo "$CATCHUP"; else
        local half=$(($1 / 2)); echo $((half < 500000 ? half : 500000)); fi
}
last=${points[-1]}
extra=0
for p in "${points[@]}"; do extra=$((extra + $(catchup_for "$p"))); done

# ---- free space: refuse to start on a guess that does not fit -----------------------
mkdir -p "$WORK_PARENT"
avail_b=$(df -B1 --output=avail "$WORK_PARENT" | tail -n 1 | tr -d ' ')
need_b() { # need_b SLOTS BYTES_PER_SLOT -> bytes for 3 replicas, x 1.1
    awk -v s="$1" -v b="$2" 'BEGIN { printf "%.0f", s * b * 3 * 1.1 }'
}
gib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1073741824 }'; }
need=$(need_b $((last + extra)) "$EST_BYTES_PER_SLOT")
if ((need > avail_b)); then
    log "error: not enough free space in $WORK_PARENT: $(gib "$avail_b") GiB free, the run"
    log "needs ~$(gib "$need") GiB ($((last + extra)) slots x 3 replicas x $EST_BYTES_PER_SLOT B/slot x 1.1);"
    log "free space, lower the points, set WORK_PARENT, or EST_BYTES_PER_SLOT if you know better"
    exit 2
fi

if command -v ss >/dev/null; then
    listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    for p in $BASE_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)); do
        grep -qx "$p" <<<"$listening" && die "port $p is already in use (set BASE_PORT)"
    done
fi

# Upper bound on every daemon's life: 1 h plus 2 ms a slot (>= 500 slots/s on average).
LIFETIME=$((3600 + (last + extra) / 500))
WORK=$(mktemp -d "$WORK_PARENT/paxos-growth.XXXXXX")
CONF=$WORK/config.toml
WRAP=() # per uid: the `timeout` wrapper's PID
DPID=() # per uid: the paxosd PID under it
AUX=()  # background bench / samplers
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 3>&2 2>/dev/null # bash would report each killed wrapper as "Killed"
    for pid in "${AUX[@]}"; do kill -TERM "$pid" || true; done
    for pid in "${WRAP[@]}"; do kill -TERM "$pid" || true; done
    for _ in $(seq 100); do
        alive=0
        for pid in "${WRAP[@]}" "${AUX[@]}"; do kill -0 "$pid" && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${WRAP[@]}" "${DPID[@]}" "${AUX[@]}"; do kill -KILL "$pid" || true; done
    for pid in "${WRAP[@]}" "${AUX[@]}"; do wait "$pid" || true; done
    exec 2>&3 3>&-
    if ((rc != 0)); then
        log "failed (exit $rc); data and daemon logs kept in $WORK"
    elif [[ $KEEP == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.3f", a / b; else printf "null" }'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { calc "${1:-0} / 1024" 1; }
ctl() { timeout -k 2 30 "$PAXOSCTL" --config "$CONF" --command-timeout 5s "$@"; }
# One status round: "LEADER LEADER_DECIDED UID:REACHABLE:DECIDED ..." (decided -1 if unknown).
STATUS=()
poll_status() {
    local out
    out=$(ctl status --json 2>/dev/null) || true
    read -r -a STATUS < <(jq -r -s '
        ([.[] | select(.role == "leader" and .reachable)] | first) as $l
        | [($l.uid // -1), ($l.decided // -1)]
          + [.[] | "\(.uid):\(.reachable):\(.decided // -1)"] | map(tostring) | join(" ")' <<<"$out" 2>/dev/null \
        || echo "-1 -1")
    [[ ${#STATUS[@]} -ge 2 ]] || STATUS=(-1 -1)
}
leader() { echo "${STATUS[0]}"; }
leader_decided() { echo "${STATUS[1]}"; }
reachable() { local e; for e in "${STATUS[@]:2}"; do [[ $e == "$1":true:* ]] && return 0; done; return 1; }
decided_of() { local e; for e in "${STATUS[@]:2}"; do [[ $e == "$1":* ]] && { echo "${e##*:}"; return; }; done; echo -1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
mem_available_mib() { awk '/^MemAvailable/ {printf "%d", $2 / 1024}' /proc/meminfo; }

# interruptible OUT CMD...: run CMD in the background (stdout >> OUT.out, stderr >> OUT.err;
# OUT may be /dev/null) and wait for it, so that INT/TERM reach the traps at once (bash
# runs a trap only after a foreground child has finished).
interruptible() {
    local out=$1 pid rc=0
    shift
    if [[ $out == /dev/null ]]; then "$@" >/dev/null 2>&1 & else "$@" >>"$out.out" 2>>"$out.err" & fi
    pid=$!
    AUX+=("$pid")
    wait "$pid" || rc=$?
    AUX=()
    return "$rc"
}

start_replica() { # start_replica UID: WRAP[UID], DPID[UID]
    local uid=$1 w d=
    timeout -k 5 "$LIFETIME" "$PAXOSD" --config "$CONF" --uid "$uid" \
        >>"$WORK/paxosd-$uid.out" 2>&1 &
    w=$!
    WRAP[uid]=$w
    for _ in $(seq 100); do
        d=$(pgrep -P "$w" | head -n 1) && [[ -n $d ]] && break
        sleep 0.02
    done
    [[ -n $d ]] || die "paxosd uid $uid did not start (see $WORK/paxosd-$uid.out)"
    DPID[uid]=$d
}
kill9_replica() { # kill9_replica UID
    local uid=$1
    exec 3>&2 2>/dev/null
    kill -KILL "${DPID[uid]}" || true
    wait "${WRAP[uid]}" || true
    exec 2>&3 3>&-
}
# wait_until SECONDS CONDITION...: poll status every ~0.05 s until CONDITION holds.
wait_until() {
    local deadline
    deadline=$(calc "$(now) + $1")
    shift
    while :; do
        poll_status
        "$@" && return 0
        awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && return 1
        sleep 0.05
    done
}
all_reachable() { reachable 0 && reachable 1 && reachable 2 && [[ $(leader) -ge 0 ]]; }
all_equal() {
    all_reachable || return 1
    local l; l=$(leader_decided)
    [[ $(decided_of 0) == "$l" && $(decided_of 1) == "$l" && $(decided_of 2) == "$l" ]]
}
follower_of() { # the highest uid that is not the leader
    local u; for u in 2 1 0; do [[ $u != "$1" ]] && { echo "$u"; return; }; done
}

# ---- the cluster ------------------------------------------------------------------------
tls_flag=()
[[ $PAXOS_TLS == 1 ]] || tls_flag=(--no-tls)
timeout 30 "$PAXOSCTL" gen-config -f 1 --base-port "$BASE_PORT" "${tls_flag[@]}" -o "$CONF" >/dev/null 2>&1 \
    || die "gen-config failed"
sed -i "s|^data_dir = .*|data_dir = \"$WORK/data\"|" "$CONF"
grep -q "^data_dir = \"$WORK/data\"" "$CONF" || die "could not set data_dir in $CONF"
for uid in 0 1 2; do start_replica "$uid"; done
wait_until 30 all_reachable || die "the cluster did not come up (see $WORK/paxosd-*.out)"
log "$(nproc) cores, $(uname -r), $("$PAXOSCTL" --version), data in $WORK ($(gib "$avail_b") GiB free, estimate $(gib "$need") GiB)"
log "points: ${points[*]} slots of $SIZE B, $CLIENTS clients; load $(loadavg)"

# ---- filling ------------------------------------------------------------------------
fill_rate=10000 # slots/s, a guess for the first step, then each step's measured rate
# disk_guard TARGET HAVE: fail if the measured bytes per slot say that filling to TARGET
# (plus its catch-up slots) would not fit in the free space.
disk_guard() {
    local target=$1 have=$2 used per need free
    ((have > 0)) || return 0
    used=$(du -sb "$WORK/data/node-$(leader)" 2>/dev/null | cut -f1) || return 0
    per=$(calc "${used:-0} / $have" 1)
    need=$(need_b $((target + $(catchup_for "$target") - have)) "$per")
    free=$(df -B1 --output=avail "$WORK" | tail -n 1 | tr -d ' ')
    ((need <= free)) || die "not enough free space to reach $target slots: $(gib "$free") GiB free, $(gib "$need") GiB needed at the measured $per B/slot (at $have slots)"
}
fill_to() { # fill_to SLOTS: bench steps until the leader's decided prefix holds SLOTS
    local target=$1 have before step_s started stalls=0 rate
    while :; do
        wait_until 30 all_reachable || die "a replica is unreachable while filling"
        have=$(leader_decided)
        ((have >= target)) && return 0
        ((${#STATUS[@]} > 2)) || die "no status while filling"
        # Aim at the point with the last step's rate (bench --duration takes fractions).
        step_s=$(awk -v r="$((target - have))" -v f="$fill_rate" \
            'BEGIN { s = r / f; if (s < 0.5) s = 0.5; if (s > 30) s = 30; printf "%.1f", s }')
        log "filling: $have of $target slots decided ($(calc "100 * $have / $target" 0)%), next step ${step_s}s at ~$fill_rate slots/s; load $(loadavg); MemAvailable $(mem_available_mib) MiB"
        before=$have
        started=$(now)
        interruptible "$WORK/fill-bench" timeout -k 5 $((${step_s%.*} + 60)) "$PAXOSCTL" \
            --config "$CONF" bench --json --clients "$CLIENTS" --duration "$step_s" --size "$SIZE" \
            || log "a fill step failed (see $WORK/fill-bench.err); going on"
        poll_status
        have=$(leader_decided)
        rate=$(calc "($have - $before) / $(since "$started")" 0)
        if ((have <= before)); then
            stalls=$((stalls + 1))
            ((stalls < 3)) || die "three fill steps decided nothing"
        else
            stalls=0
            fill_rate=$rate
            ((fill_rate > 0)) || fill_rate=1000
        fi
        disk_guard "$target" "$have"
        (($(mem_available_mib) >= MIN_MEM_AVAILABLE_MIB)) \
            || die "MemAvailable $(mem_available_mib) MiB < $MIN_MEM_AVAILABLE_MIB MiB at $have slots: stopping before the OOM killer does (RSS $(for u in 0 1 2; do printf '%s ' "$(mib "$(rss_kib "${DPID[u]}")")"; done)MiB)"
    done
}

measure_point() { # measure_point POINT -> one JSON line
    local point=$1 fill_started fill_from fill_s fill_avg slots ld fu rss=() disk=() bps=() pr=() u d
    poll_status; fill_from=$(leader_decided)
    fill_started=$(now)
    fill_to "$point"
    fill_s=$(since "$fill_started")
    wait_until 60 all_equal || die "replicas did not converge after filling: ${STATUS[*]}"
    slots=$(leader_decided); ld=$(leader); fu=$(follower_of "$ld")
    fill_avg=$(awk -v n="$((slots - fill_from))" -v t="$fill_s" \
        'BEGIN { if (n > 0 && t > 0) printf "%.0f", n / t; else printf "null" }')
    log "point $point: $slots slots decided on every replica (fill ${fill_s}s); leader $ld, follower under test $fu"

    # 1. RSS and disk, idle: RSS as the load stops (rss_loaded) and SETTLE_S later
    # (rss: a replica hands malloc's free pages back once a busy second has passed).
    local rss_loaded=()
    for u in 0 1 2; do rss_loaded+=("$(mib "$(rss_kib "${DPID[u]}")")"); done
    interruptible /dev/null sleep "$SETTLE_S"
    for u in 0 1 2; do
        rss+=("$(mib "$(rss_kib "${DPID[u]}")")")
        d=$(du -sb "$WORK/data/node-$u" | cut -f1)
        disk+=("$d")
        bps+=("$(calc "$d / $slots" 1)")
        pr+=("$(calc "$d / ($slots * ($SIZE + 24))" 2)")
    done
    log "rss MiB ${rss[*]} (${rss_loaded[*]} as the load stopped); disk B ${disk[*]}; B/slot ${bps[*]}; x payload ${pr[*]}"

    # 2. Restart, idle: kill -9 the follower, restart it, time serving and caught up.
    local r_started r_serving r_caught r_rss r_decided0
    kill9_replica "$fu"
    r_started=$(now)
    start_replica "$fu"
    wait_until 120 reachable "$fu" || die "restarted uid $fu did not serve within 120 s"
    r_serving=$(since "$r_started")
    r_decided0=$(decided_of "$fu")
    wait_until 300 all_equal || die "restarted uid $fu did not catch up within 300 s: ${STATUS[*]}"
    r_caught=$(since "$r_started")
    r_rss=$(mib "$(rss_kib "${DPID[fu]}")")
    log "restart idle: uid $fu serving after ${r_serving}s (decided $r_decided0), caught up to $(leader_decided) after ${r_caught}s; RSS $r_rss MiB"

    # 3. Catch-up under load.
    local k load_s bench_pid b0 b1 t0 base_rate k_started down_from down_rate c_started \
        target c_serving c_first c_done=null c_lagok=null t_serv entries c_rate=null \
        l_restart l_done w_rate=null w_ratio=null lead_peak=0 fol_rss load_c deadline lag r \
        lag_deadline=
    k=$(catchup_for "$point")
    local f_before c_rate_all
    load_s=$((BASELINE_S + 2 + (k / (fill_rate > 0 ? fill_rate : 1000)) * 3 + CATCHUP_TIMEOUT_S + 60))
    timeout -k 5 $((load_s + 30)) "$PAXOSCTL" --config "$CONF" bench --json \
        --clients "$CLIENTS" --duration "$load_s" --size "$SIZE" \
        >>"$WORK/catchup-bench.out" 2>>"$WORK/catchup-bench.err" &
    bench_pid=$!
    AUX+=("$bench_pid")
    sleep 2
    poll_status; b0=$(leader_decided); t0=$(now)
    interruptible /dev/null sleep "$BASELINE_S"
    poll_status; b1=$(leader_decided)
    base_rate=$(calc "($b1 - $b0) / $(since "$t0")" 0)
    log "catch-up: write rate before $base_rate slots/s under $CLIENTS clients; kill -9 uid $fu, then $k slots more"
    f_before=$(decided_of "$fu") # what its store holds, give or take the last batch
    kill9_replica "$fu"
    k_started=$(now); down_from=$(leader_decided)
    down_written() { (($(leader_decided) >= down_from + k)); }
    wait_until $((k / 500 + 60)) down_written \
        || die "the cluster did not write $k slots with uid $fu down: ${STATUS[*]}"
    down_rate=$(calc "($(leader_decided) - $down_from) / $(since "$k_started")" 0)
    c_started=$(now)
    start_replica "$fu"
    poll_status
    target=$(leader_decided); l_restart=$target
    log "catch-up: uid $fu restarted $((target - down_from)) slots behind the leader's $target (rate with it down $down_rate slots/s)"
    deadline=$(calc "$(now) + $CATCHUP_TIMEOUT_S")
    c_serving=null; c_first=null
    while :; do
        poll_status
        r=$(rss_kib "${DPID[ld]}"); ((r > lead_peak)) && lead_peak=$r
        d=$(decided_of "$fu")
        if [[ $c_serving == null ]] && reachable "$fu"; then
            c_serving=$(since "$c_started"); c_first=$d; t_serv=$(now)
        fi
        if [[ $c_serving != null && $c_done == null ]] && ((d >= target)); then
            c_done=$(since "$c_started")
            entries=$((target - f_before))
            c_rate_all=$(calc "$entries / $c_done" 0)
            # From its first answer on (null when it had caught up before answering).
            c_rate=$(awk -v e="$((target - c_first))" -v t="$(since "$t_serv")" \
                'BEGIN { if (e > 0 && t > 0) printf "%.0f", e / t; else printf "null" }')
            l_done=$(leader_decided)
            w_rate=$(calc "($l_done - $l_restart) / $c_done" 0)
            w_ratio=$(ratio "$w_rate" "$base_rate")
            load_c=$(cut -d' ' -f1 /proc/loadavg)
            log "catch-up: uid $fu reached $target after ${c_done}s: $entries entries, $c_rate_all entries/s counting the restart, $c_rate entries/s from its first answer at ${c_serving}s ($c_first); cluster wrote $w_rate slots/s meanwhile (${w_ratio}x before)"
        fi
        if [[ $c_done != null ]]; then
            lag=$(($(leader_decided) - d))
            if ((lag <= 2 * CLIENTS)); then c_lagok=$(since "$c_started"); break; fi
            [[ -n $lag_deadline ]] || lag_deadline=$(calc "$(now) + 60")
            awk -v n="$(now)" -v d="$lag_deadline" 'BEGIN { exit !(n > d) }' && break
        fi
        awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && break
        sleep 0.05
    done
    fol_rss=$(mib "$(rss_kib "${DPID[fu]}")")
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
    AUX=()
    [[ $c_done != null ]] || die "uid $fu did not catch up within ${CATCHUP_TIMEOUT_S}s: ${STATUS[*]}"
    [[ $c_lagok != null ]] || log "catch-up: uid $fu reached the restart target but its lag stayed above $((2 * CLIENTS)) under load"
    wait_until 120 all_equal || die "replicas did not converge after the catch-up load: ${STATUS[*]}"

    # 4. dump-log of the whole log from the leader, idle.
    local dslots dump_started dump_s lines ctl_max=0 dpeak=0 dbefore dpid tv=() hwm
    dslots=$(leader_decided)
    dbefore=$(rss_kib "${DPID[ld]}")
    [[ -x /usr/bin/time ]] && tv=(/usr/bin/time -v -o "$WORK/dump-time.txt")
    dump_started=$(now)
    "${tv[@]}" timeout -k 5 $((dslots / 2000 + 120)) "$PAXOSCTL" --config "$CONF" \
        --command-timeout $((dslots / 2000 + 110))s dump-log --uid "$ld" --json \
        2>"$WORK/dump.err" > >(wc -l >"$WORK/dump-lines") &
    dpid=$!
    AUX+=("$dpid")
    while kill -0 "$dpid" 2>/dev/null; do
        r=$(rss_kib "${DPID[ld]}"); ((r > dpeak)) && dpeak=$r
        if ((${#tv[@]} == 0)); then # dpid is the timeout wrapper: read its paxosctl child
            hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$(pgrep -P "$dpid" | head -n 1)/status" 2>/dev/null || echo 0)
            ((${hwm:-0} > ctl_max)) && ctl_max=$hwm
        fi
        sleep 0.05
    done
    wait "$dpid" || die "dump-log failed: $(tail -n 3 "$WORK/dump.err")"
    AUX=()
    dump_s=$(since "$dump_started")
    for _ in $(seq 50); do [[ -s $WORK/dump-lines ]] && break; sleep 0.1; done
    lines=$(tr -d ' ' <"$WORK/dump-lines")
    ((${#tv[@]} == 0)) || ctl_max=$(awk '/Maximum resident set size/ {print $NF}' "$WORK/dump-time.txt")
    log "dump-log: $lines lines of $dslots slots in ${dump_s}s; paxosctl max RSS $(mib "$ctl_max") MiB; leader RSS $(mib "$dbefore") -> peak $(mib "$dpeak") MiB"

    jq -n -c \
        --argjson point "$point" --argjson slots "$slots" --argjson size "$SIZE" --argjson clients "$CLIENTS" \
        --argjson leader "$ld" --argjson fill_s "$fill_s" --argjson fill_avg "$fill_avg" \
        --argjson rss "[$(IFS=,; echo "${rss[*]}")]" --argjson rss_loaded "[$(IFS=,; echo "${rss_loaded[*]}")]" --argjson disk "[$(IFS=,; echo "${disk[*]}")]" \
        --argjson bps "[$(IFS=,; echo "${bps[*]}")]" --argjson pr "[$(IFS=,; echo "${pr[*]}")]" \
        --argjson fu "$fu" --argjson r_serving "$r_serving" --argjson r_caught "$r_caught" \
        --argjson r_rss "$r_rss" --argjson r_decided0 "$r_decided0" \
        --argjson k "$((target - down_from))" --argjson base_rate "$base_rate" \
        --argjson down_rate "$down_rate" --argjson c_serving "$c_serving" \
        --argjson c_done "$c_done" --argjson c_lagok "$c_lagok" --argjson entries "$entries" \
        --argjson c_rate "$c_rate" --argjson c_rate_all "$c_rate_all" \
        --argjson f_before "$f_before" --argjson c_first "$c_first" --argjson w_rate "$w_rate" --argjson w_ratio "$w_ratio" \
        --argjson lead_peak "$(mib "$lead_peak")" --argjson fol_rss "$fol_rss" \
        --argjson load_c "$load_c" \
        --argjson dslots "$dslots" --argjson lines "$lines" --argjson dump_s "$dump_s" \
        --argjson ctl_max "$(mib "$ctl_max")" --argjson dbefore "$(mib "$dbefore")" \
        --argjson dpeak "$(mib "$dpeak")" \
        --arg loadavg "$(loadavg)" --arg time_src "$([[ ${#tv[@]} -gt 0 ]] && echo time-v || echo proc-vmhwm)" \
        '{point: $point, slots: $slots, size_b: $size, leader: $leader,
          rss_mib: $rss, rss_mib_loaded: $rss_loaded, disk_bytes: $disk, bytes_per_slot: $bps, payload_ratio: $pr,
          fill_s: $fill_s, fill_slots_per_s: $fill_avg,
          restart_idle: {uid: $fu, load: "none", serving_s: $r_serving, caught_up_s: $r_caught,
                         decided_at_serving: $r_decided0, rss_mib_after: $r_rss},
          catchup: {uid: $fu, load: "bench \($clients) clients", behind_slots: $k,
                    serving_s: $c_serving, reached_restart_target_s: $c_done,
                    decided_before_kill: $f_before, decided_at_serving: $c_first,
                    entries: $entries, entries_per_s_incl_restart: $c_rate_all,
                    entries_per_s_after_serving: $c_rate, lag_within_pipeline_s: $c_lagok,
                    write_rate_before: $base_rate, write_rate_follower_down: $down_rate,
                    write_rate_during: $w_rate, write_rate_ratio: $w_ratio,
                    leader_rss_peak_mib: $lead_peak, follower_rss_mib_after: $fol_rss,
                    loadavg_1m: $load_c},
          dump_log: {uid: $leader, load: "none", slots: $dslots, lines: $lines, seconds: $dump_s,
                     paxosctl_max_rss_mib: $ctl_max, paxosctl_rss_from: $time_src,
                     daemon_rss_before_mib: $dbefore, daemon_rss_peak_mib: $dpeak},
          loadavg: $loadavg}'

    # Enough disk for the next point, from what this one measured?
    local per_slot next_need free
    per_slot=$(printf '%s\n' "${bps[@]}" | sort -n | tail -n 1)
    for p in "${points[@]}"; do
        ((p > point)) || continue
        next_need=$(need_b $((last + extra - slots)) "$per_slot")
        free=$(df -B1 --output=avail "$WORK" | tail -n 1 | tr -d ' ')
        ((next_need <= free)) || die "not enough free space to go on: $(gib "$free") GiB free, $(gib "$next_need") GiB needed at the measured $per_slot B/slot"
        break
    done
}

for point in "${points[@]}"; do
    measure_point "$point"
done
log "done; load $(loadavg)"
