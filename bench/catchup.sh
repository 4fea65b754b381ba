#!/usr/bin/env bash
# Catch-up benchmark (issue 10 item 5): how fast a replica far behind catches up from its
# peers' stores, idle and under client load, and what the load's write rate does meanwhile.
#
# One prepared cluster state, reused by every run so that runs of two builds compare on
# the same data: a 3-replica cluster (release binaries, fsync on, mutual TLS) whose uid 2
# was `kill -9`ed at slot ~0 and which then wrote BEHIND slots of SIZE-byte messages
# (`paxosctl bench --clients CLIENTS`). Prepared once into PREP (kept; delete it to redo).
# Each run copies PREP into a temp dir, starts uids 0 and 1 (waits for a leader) and:
#   idle:  restarts uid 2 and times its decided prefix from its first answer up to the
#          leader's prefix (fixed, no load): entries/s;
#   load:  runs a CLIENTS-client bench throughout; the write rate (leader's prefix delta)
#          is measured for BASELINE_S s with uid 2 down, then uid 2 is started and the
#          script times how fast it reaches the leader's prefix as of its start, and the
#          write rate meanwhile (ratio to the rate before);
# then, caught up and idle, `kill -9`s uid 2 and times restart-to-serving (its client
# port answers status) and the size of its sled `db` file. PERF=1 records `perf record -g`
# of the laggard and of the leader during the catch-up (perf-<mode>-<role>.txt, top
# symbols by self time, in OUT; "sender" = uids 0 and 1 together, whichever answers). One JSON line per mode on stdout; progress on stderr.
#
#   bash bench/catchup.sh                     # modes idle load, BIN=target/release
#   BIN=/tmp/catchup-before MODES=idle bash bench/catchup.sh
#
# Knobs: BEHIND=1100000 SIZE=100 CLIENTS=256 BASELINE_S=10 MODES="idle load" PERF=0
#   PREP=/tmp/paxos-catchup-prep  OUT=/tmp/paxos-catchup-out  BASE_PORT=7981
#   TIMEOUT_S=600 (longest a catch-up may take)  POLL_S=0.2 (status poll interval while
#   catching up: each poll is a paxosctl process and TLS handshakes, not free on 2 cores)
# Needs BIN/paxosd and BIN/paxosctl (never builds); daemons run under `timeout` and are
# killed by PID on exit.
set -euo pipefail

BEHIND=${BEHIND:-1100000}
SIZE=${SIZE:-100}
CLIENTS=${CLIENTS:-256}
BASELINE_S=${BASELINE_S:-10}
MODES=${MODES:-idle load}
PERF=${PERF:-0}
PREP=${PREP:-/tmp/paxos-catchup-prep}
OUT=${OUT:-/tmp/paxos-catchup-out}
BASE_PORT=${BASE_PORT:-7981}
TIMEOUT_S=${TIMEOUT_S:-600}
POLL_S=${POLL_S:-0.2}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$REPO/target/release}
PAXOSD=$BIN/paxosd
PAXOSCTL=$BIN/paxosctl
for b in "$PAXOSD" "$PAXOSCTL"; do [[ -x $b ]] || { echo "$b missing" >&2; exit 2; }; done
for t in jq awk timeout; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }; done
mkdir -p "$OUT"

log() { printf '# catchup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds (user + system) a process has used.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

WORK=
WRAP=()
DPID=()
AUX=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 3>&2 2>/dev/null
    for pid in "${AUX[@]}" "${WRAP[@]}"; do kill -TERM "$pid" || true; done
    sleep 0.5
    for pid in "${AUX[@]}" "${WRAP[@]}" "${DPID[@]}"; do kill -KILL "$pid" || true; done
    for pid in "${AUX[@]}" "${WRAP[@]}"; do wait "$pid" || true; done
    exec 2>&3 3>&-
    if [[ -n $WORK && $rc == 0 ]]; then rm -rf "$WORK"; elif [[ -n $WORK ]]; then log "failed; kept $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CONF=
ctl() { timeout -k 2 30 "$PAXOSCTL" --config "$CONF" --command-timeout 5s "$@"; }
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
start_replica() {
    local uid=$1 w d=
    timeout -k 5 7200 "$PAXOSD" --config "$CONF" --uid "$uid" >>"$WORK/paxosd-$uid.out" 2>&1 &
    w=$!
    WRAP[uid]=$w
    for _ in $(seq 100); do
        d=$(pgrep -P "$w" | head -n 1) && [[ -n $d ]] && break
        sleep 0.02
    done
    [[ -n $d ]] || die "paxosd uid $uid did not start"
    DPID[uid]=$d
}
kill9_replica() {
    exec 3>&2 2>/dev/null
    kill -KILL "${DPID[$1]}" || true
    wait "${WRAP[$1]}" || true
    exec 2>&3 3>&-
}
stop_replica() {
    exec 3>&2 2>/dev/null
    kill -TERM "${DPID[$1]}" || true
    wait "${WRAP[$1]}" || true
    exec 2>&3 3>&-
}
has_leader() { [[ $(leader) -ge 0 ]] && reachable 0 && reachable 1; }
follower_ok() { reachable 2; }

# ---- prepare once ------------------------------------------------------------------
if [[ ! -f $PREP/ready ]]; then
    rm -rf "$PREP"
    mkdir -p "$PREP"
    WORK=$PREP
    CONF=$PREP/config.toml
    timeout 30 "$PAXOSCTL" gen-config -f 1 --base-port "$BASE_PORT" -o "$CONF" >/dev/null 2>&1 || die "gen-config failed"
    sed -i "s|^data_dir = .*|data_dir = \"$PREP/data\"|" "$CONF"
    for uid in 0 1 2; do start_replica "$uid"; done
    wait_until 30 has_leader || die "no leader"
    wait_until 30 follower_ok || die "uid 2 not up"
    kill9_replica 2
    log "preparing: uid 2 down, writing $BEHIND slots; load $(loadavg)"
    while poll_status; (($(leader_decided) < BEHIND)); do
        timeout -k 5 120 "$PAXOSCTL" --config "$CONF" bench --json --clients "$CLIENTS" --duration 20 --size "$SIZE" >/dev/null 2>>"$PREP/fill.err" || true
        log "preparing: $(leader_decided) of $BEHIND; load $(loadavg)"
    done
    stop_replica 0
    stop_replica 1
    WRAP=(); DPID=()
    touch "$PREP/ready"
    WORK=
    log "prepared $PREP"
fi

# ---- runs ---------------------------------------------------------------------------
run_mode() { # run_mode idle|load -> one JSON line
    local mode=$1 bench_pid=
    WORK=$(mktemp -d /tmp/paxos-catchup.XXXXXX)
    cp -a "$PREP"/. "$WORK/"
    rm -f "$WORK"/paxosd-*.out
    CONF=$WORK/config.toml
    sed -i "s|$PREP|$WORK|g" "$CONF"
    sync
    start_replica 0; start_replica 1
    wait_until 60 has_leader || die "no leader after restart"
    local ld; ld=$(leader)
    local base_rate=null w_rate=null ratio=null b0 b1 t0
    if [[ $mode == load ]]; then
        timeout -k 5 $((TIMEOUT_S + 120)) "$PAXOSCTL" --config "$CONF" bench --json --clients "$CLIENTS" \
            --duration $((TIMEOUT_S + 60)) --size "$SIZE" >>"$WORK/bench.out" 2>>"$WORK/bench.err" &
        bench_pid=$!; AUX+=("$bench_pid")
        sleep 3
        poll_status; b0=$(leader_decided); t0=$(now)
        sleep "$BASELINE_S"
        poll_status; b1=$(leader_decided)
        base_rate=$(calc "($b1 - $b0) / $(since "$t0")" 0)
        log "$mode: write rate with uid 2 down $base_rate slots/s"
    fi
    poll_status
    local target from c_started c_first=null t_first= c_done=null d l_start perf_pids=()
    target=$(leader_decided); l_start=$target
    c_started=$(now)
    start_replica 2
    if [[ $PERF == 1 ]]; then
        perf record -g -o "$OUT/perf-$mode-laggard.data" -p "${DPID[2]}" >/dev/null 2>&1 & perf_pids+=($!)
        perf record -g -o "$OUT/perf-$mode-sender.data" -p "${DPID[0]},${DPID[1]}" >/dev/null 2>&1 & perf_pids+=($!)
        AUX+=("${perf_pids[@]}")
    fi
    local deadline; deadline=$(calc "$(now) + $TIMEOUT_S")
    local cpu_l0 cpu_s0; cpu_l0=$(cpu_s "${DPID[2]}"); cpu_s0=$(calc "$(cpu_s "${DPID[0]}") + $(cpu_s "${DPID[1]}")" 2)
    while :; do
        poll_status
        d=$(decided_of 2)
        if [[ $c_first == null ]] && reachable 2; then c_first=$d; t_first=$(now); fi
        if [[ $c_first != null ]] && ((d >= target)); then
            c_done=$(since "$t_first"); break
        fi
        awk -v n="$(now)" -v e="$deadline" 'BEGIN { exit !(n > e) }' && die "no catch-up within $TIMEOUT_S s"
        sleep "$POLL_S"
    done
    local cpu_l cpu_s
    cpu_l=$(calc "$(cpu_s "${DPID[2]}") - $cpu_l0" 2); cpu_s=$(calc "$(cpu_s "${DPID[0]}") + $(cpu_s "${DPID[1]}") - $cpu_s0" 2)
    local l_done; l_done=$(leader_decided)
    local total_s; total_s=$(since "$c_started")
    local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
    for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${perf_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    local entries=$((target - c_first))
    local rate; rate=$(awk -v e="$entries" -v t="$c_done" 'BEGIN { if (t > 0) printf "%.0f", e / t; else print "null" }')
    if [[ $mode == load ]]; then
        w_rate=$(calc "($l_done - $l_start) / $total_s" 0)
        ratio=$(calc "$w_rate / $base_rate" 3)
        kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" 2>/dev/null || true
        AUX=()
    fi
    log "$mode: CPU seconds during the catch-up: laggard $cpu_l, uids 0 and 1 together (leader, sender) $cpu_s"
    log "$mode: uid 2 from $c_first (first answer, $(calc "$t_first - $c_started" 2) s after start) to $target in ${c_done}s: $rate entries/s; write rate $w_rate (x$ratio); load $(loadavg)"
    local db_b rss
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/${DPID[2]}/status")
    # Restart-to-serving once caught up (idle).
    wait_until 60 follower_ok || true
    sleep 1
    db_b=$(stat -c %s "$WORK/data/node-2/db")
    kill9_replica 2
    local r0; r0=$(now)
    start_replica 2
    wait_until 60 follower_ok || die "uid 2 did not serve after restart"
    local r_serv; r_serv=$(since "$r0")
    log "$mode: restart to serving ${r_serv}s; laggard sled db $db_b B; RSS $rss KiB before restart"
    if [[ $PERF == 1 ]]; then
        for role in laggard sender; do
            perf report -i "$OUT/perf-$mode-$role.data" --no-children -g none --sort comm,symbol --stdio 2>/dev/null \
                | grep -v '^#' | grep '%' | head -40 | cut -c1-160 >"$OUT/perf-$mode-$role.txt" || true
            perf report -i "$OUT/perf-$mode-$role.data" --no-children -g none --sort comm --stdio 2>/dev/null \
                | grep -v '^#' | grep '%' | head -20 >"$OUT/perf-$mode-$role-threads.txt" || true
        done
    fi
    jq -n -c --arg mode "$mode" --arg bin "$BIN" --argjson entries "$entries" --argjson secs "$c_done" \
        --argjson rate "$rate" --argjson base "$base_rate" --argjson during "$w_rate" --argjson ratio "$ratio" \
        --argjson serving "$r_serv" --argjson db "$db_b" --argjson rss_kib "$rss" --argjson cpu_l "$cpu_l" --argjson cpu_s "$cpu_s" --arg load1 "$load1" --arg loadavg "$(loadavg)" \
        '{mode: $mode, bin: $bin, entries: $entries, seconds: $secs, entries_per_s: $rate,
          write_rate_before: $base, write_rate_during: $during, write_ratio: $ratio,
          restart_to_serving_s: $serving, cpu_s_laggard: $cpu_l, cpu_s_peers: $cpu_s, laggard_sled_db_bytes: $db, laggard_rss_kib: $rss_kib,
          loadavg_1m_at_end: $load1, loadavg: $loadavg}'
    for u in 0 1 2; do stop_replica "$u"; done
    WRAP=(); DPID=()
    rm -rf "$WORK"; WORK=
}

for mode in $MODES; do run_mode "$mode"; done
