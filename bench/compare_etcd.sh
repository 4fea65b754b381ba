#!/usr/bin/env bash
# Same-machine comparison of paxos against etcd, with one load shape for both:
# N closed-loop clients, each with one write in flight, each submitting one SIZE-byte
# message after another for DURATION seconds (`paxosctl bench` for paxos,
# bench/etcd's `etcd-bench` for etcd's v3 put). Every acknowledged write is fsynced on
# a majority in both systems (paxos: sled flush + sync_data; etcd: its WAL fsync).
#
#   bash bench/compare_etcd.sh                       # clients 1 16 64 256, 100 B, 10 s each
#   DURATION=30 CLIENTS="16 64" bash bench/compare_etcd.sh
#   REPLICAS=5 bash bench/compare_etcd.sh            # the f=2 row: 5 replicas / members
#
# Per point it also reports, for both systems, the daemons' CPU (user + system, from
# /proc/PID/stat) per committed write, and the server-side committed count next to the
# client's: paxos's decided-prefix delta (`paxosctl status --json`), etcd's
# etcd_server_proposals_committed_total delta (leader's /metrics).
#
# Knobs (environment):
#   DURATION=10           seconds per bench run
#   CLIENTS="1 16 64 256" client counts, one paxos run then one etcd run for each
#   SIZE=100              message / value bytes
#   REPLICAS=3            replicas (paxos) and members (etcd): 3 or 5
#   ETCD_CONNS=0          etcd-bench --conns (0 = one gRPC connection per client, like paxos)
#   ETCD_TARGET_LEADER=1  1 = etcd-bench sends to the leader's endpoint only (paxos's
#                         client also sends to its leader); 0 = balance over all 3
#   PAXOS_TLS=1           1 = paxos with mutual TLS (gen-config's default); 0 = --no-tls
#                         (etcd runs without TLS; bench/tls_cost.sh measures what TLS costs)
#   PAXOS_BASE_PORT=7501  paxos replicas on 7501-7503
#   ETCD_CLIENT_BASE=23791 ETCD_PEER_BASE=23801   etcd on 23791-23793 / 23801-23803
#   WORK_PARENT=/tmp      where the temp dir for both clusters' data goes (same disk for both)
#   KEEP=1                keep the temp dir (data and logs) instead of removing it
#
# Needs target/release/paxosd and paxosctl already built (this script never builds the
# main crate); builds bench/etcd with `nice -n 19 cargo build --release` if its binary
# is missing; installs Debian's etcd-server/etcd-client if etcd is missing.
# Everything it starts is bounded by `timeout` and killed by PID on exit.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 16 64 256"}
SIZE=${SIZE:-100}
REPLICAS=${REPLICAS:-3}
case $REPLICAS in 3|5) ;; *) echo "compare_etcd: REPLICAS must be 3 or 5" >&2; exit 2 ;; esac
F=$(( (REPLICAS - 1) / 2 ))
LAST=$(( REPLICAS - 1 ))
ETCD_CONNS=${ETCD_CONNS:-0}
ETCD_TARGET_LEADER=${ETCD_TARGET_LEADER:-1}
PAXOS_TLS=${PAXOS_TLS:-1}
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-7501}
ETCD_CLIENT_BASE=${ETCD_CLIENT_BASE:-23791}
ETCD_PEER_BASE=${ETCD_PEER_BASE:-23801}
WORK_PARENT=${WORK_PARENT:-${TMPDIR:-/tmp}}
KEEP=${KEEP:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAXOSD=$REPO/target/release/paxosd
PAXOSCTL=$REPO/target/release/paxosctl
ETCD_BENCH=$REPO/bench/etcd/target/release/etcd-bench
# Upper bound on the life of every daemon started here (all runs plus slack).
n_runs=$(wc -w <<<"$CLIENTS")
LIFETIME=$(( (DURATION + 40) * 2 * n_runs + 300 ))
BENCH_TIMEOUT=$(( DURATION + 60 ))

log() { printf '%s\n' "compare_etcd: $*" >&2; }
die() { log "error: $*"; exit 1; }

for b in "$PAXOSD" "$PAXOSCTL"; do
    [[ -x $b ]] || die "$b missing: build the main crate first (cargo build --release)"
done

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    log "installing etcd-server etcd-client (Debian)"
    timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >&2 \
        || { timeout 600 apt-get update >&2 && timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >&2; } \
        || die "cannot install etcd-server/etcd-client"
fi

if [[ ! -x $ETCD_BENCH ]]; then
    if ! command -v protoc >/dev/null; then
        log "installing protobuf-compiler (etcd-client's build script needs protoc)"
        timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler >&2 \
            || die "cannot install protobuf-compiler"
    fi
    log "building bench/etcd (nice -n 19 cargo build --release)"
    (cd "$REPO/bench/etcd" && timeout 1800 nice -n 19 cargo build --release >&2) \
        || die "bench/etcd build failed"
fi

# Refuse to run over something already listening on our ports.
ports=()
for i in $(seq 0 "$LAST"); do
    ports+=($((PAXOS_BASE_PORT + i)) $((ETCD_CLIENT_BASE + i)) $((ETCD_PEER_BASE + i)))
done
if command -v ss >/dev/null; then
    listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    for p in "${ports[@]}"; do
        grep -qx "$p" <<<"$listening" && die "port $p is already in use"
    done
fi

WORK=$(mktemp -d "$WORK_PARENT/compare_etcd.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # TERM every PID we started: each is a `timeout -k 5` wrapping one daemon, which
    # passes the TERM on and KILLs its daemon 5 s later if it is still there (an etcd
    # leader whose peers stopped first keeps campaigning instead of exiting). Give them
    # 10 s together, then KILL whatever is left.
    if ((${#PIDS[@]})); then
        # bash would report each `timeout` that re-raises its child's SIGKILL as "Killed".
        exec 3>&2 2>/dev/null
        for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for _ in $(seq 100); do
            alive=0
            for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            ((alive)) || break
            sleep 0.1
        done
        {
            for pid in "${PIDS[@]}"; do
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
            done
        } 2>/dev/null
        exec 2>&3 3>&-
    fi
    if [[ $KEEP == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "work dir $WORK ($(df -h --output=source,fstype "$WORK" | tail -1 | tr -s ' '))"

# ---- paxos: 3 replicas -------------------------------------------------------------
mkdir -p "$WORK/paxos"
PAXOS_CONF=$WORK/paxos.toml
paxos_tls_flag=()
[ "$PAXOS_TLS" = 1 ] || paxos_tls_flag=(--no-tls)
timeout 30 "$PAXOSCTL" gen-config -f "$F" --base-port "$PAXOS_BASE_PORT" "${paxos_tls_flag[@]}" -o "$PAXOS_CONF" >&2
sed -i "s|^data_dir = .*|data_dir = \"$WORK/paxos\"|" "$PAXOS_CONF"
grep -q "^data_dir = \"$WORK/paxos\"" "$PAXOS_CONF" || die "could not set data_dir in $PAXOS_CONF"
PAXOS_WRAPPERS=()
for uid in $(seq 0 "$LAST"); do
    timeout -k 5 "$LIFETIME" "$PAXOSD" --config "$PAXOS_CONF" --uid "$uid" \
        >"$WORK/paxosd-$uid.out" 2>&1 &
    PIDS+=($!)
    PAXOS_WRAPPERS+=($!)
done

# ---- etcd: 3 members, default fsync behaviour ----------------------------------------
ETCD_EPS=""
INITIAL=""
for i in $(seq 1 "$REPLICAS"); do
    c=$((ETCD_CLIENT_BASE + i - 1)); p=$((ETCD_PEER_BASE + i - 1))
    ETCD_EPS+="${ETCD_EPS:+,}127.0.0.1:$c"
    INITIAL+="${INITIAL:+,}e$i=http://127.0.0.1:$p"
done
ETCD_WRAPPERS=()
for i in $(seq 1 "$REPLICAS"); do
    c=$((ETCD_CLIENT_BASE + i - 1)); p=$((ETCD_PEER_BASE + i - 1))
    mkdir -p "$WORK/etcd/e$i"
    timeout -k 5 "$LIFETIME" etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$INITIAL" --initial-cluster-state new \
        --initial-cluster-token "compare-etcd-$$" \
        --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
        --logger zap >"$WORK/etcd-$i.out" 2>&1 &
    PIDS+=($!)
    ETCD_WRAPPERS+=($!)
done

# ---- wait until both clusters commit a write ------------------------------------------
ready=0
for _ in $(seq 60); do
    if timeout 10 "$PAXOSCTL" --config "$PAXOS_CONF" submit "compare_etcd warm-up" >/dev/null 2>&1; then
        ready=1; break
    fi
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -n 20 "$WORK"/paxosd-*.out >&2; die "paxos cluster did not come up"; }
ready=0
for _ in $(seq 60); do
    if ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$ETCD_EPS" --command-timeout=5s \
        put compare_etcd_warmup x >/dev/null 2>&1; then
        ready=1; break
    fi
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -n 20 "$WORK"/etcd-*.out >&2; die "etcd cluster did not come up"; }
log "both clusters up: paxos on 127.0.0.1:$PAXOS_BASE_PORT-$((PAXOS_BASE_PORT + 2)), etcd on $ETCD_EPS"
log "$(etcd --version | head -1), $("$PAXOSCTL" --version)"

jget() { # jget KEY JSON-LINE -> number
    sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"
}

etcd_args=(--endpoints "$ETCD_EPS" --conns "$ETCD_CONNS")
[[ $ETCD_TARGET_LEADER == 1 ]] && etcd_args+=(--target-leader)

# CPU seconds (user + system) of the daemons under the given `timeout` wrapper PIDs.
CLK_TCK=$(getconf CLK_TCK)
cpu_s() {
    local total=0 w d
    for w in "$@"; do
        for d in $(pgrep -P "$w"); do
            total=$(( total + $(awk '{print $14 + $15}' "/proc/$d/stat" 2>/dev/null || echo 0) ))
        done
    done
    awk -v t="$total" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }'
}
# Server-side committed counts: paxos's highest decided prefix, etcd's leader counter.
paxos_committed() {
    timeout 10 "$PAXOSCTL" --config "$PAXOS_CONF" status --json 2>/dev/null \
        | sed -n 's/.*"decided":\([0-9]*\).*/\1/p' | sort -n | tail -1
}
etcd_committed() {
    local ep m
    for ep in ${ETCD_EPS//,/ }; do
        m=$(timeout 5 curl -s "http://$ep/metrics" 2>/dev/null || true)
        if grep -q '^etcd_server_is_leader 1' <<<"$m"; then
            sed -n 's/^etcd_server_proposals_committed_total \(.*\)/\1/p' <<<"$m" | awk '{printf "%d", $1}'
            return
        fi
    done
}
per_write_us() { # per_write_us CPU_SECONDS COMMITTED
    awk -v c="${1:-0}" -v n="${2:-0}" 'BEGIN { if (n + 0 > 0) printf "%.0f", 1e6 * c / n; else printf "-" }'
}

declare -A RES
for n in $CLIENTS; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "clients=$n size=$SIZE duration=${DURATION}s (loadavg $load): paxos"
    pc0=$(paxos_committed); pcpu0=$(cpu_s "${PAXOS_WRAPPERS[@]}")
    pj=$(timeout -k 5 "$BENCH_TIMEOUT" "$PAXOSCTL" --config "$PAXOS_CONF" bench --json \
        --clients "$n" --duration "$DURATION" --size "$SIZE" 2>"$WORK/paxos-bench-$n.err" | tail -n 1) || true
    pc1=$(paxos_committed); pcpu1=$(cpu_s "${PAXOS_WRAPPERS[@]}")
    pcommitted=$(( ${pc1:-0} - ${pc0:-0} ))
    pcpu=$(awk -v a="$pcpu1" -v b="$pcpu0" 'BEGIN { printf "%.3f", a - b }')
    grep -h "errors; the first" "$WORK/paxos-bench-$n.err" >&2 || true
    echo "paxos clients=$n $pj"
    log "clients=$n size=$SIZE duration=${DURATION}s: etcd"
    ec0=$(etcd_committed); ecpu0=$(cpu_s "${ETCD_WRAPPERS[@]}")
    ej=$(timeout -k 5 "$BENCH_TIMEOUT" "$ETCD_BENCH" "${etcd_args[@]}" \
        --clients "$n" --duration "$DURATION" --size "$SIZE" 2>"$WORK/etcd-bench-$n.err" | tail -n 1) || true
    ec1=$(etcd_committed); ecpu1=$(cpu_s "${ETCD_WRAPPERS[@]}")
    ecommitted=$(( ${ec1:-0} - ${ec0:-0} ))
    ecpu=$(awk -v a="$ecpu1" -v b="$ecpu0" 'BEGIN { printf "%.3f", a - b }')
    grep -h "etcd-bench: " "$WORK/etcd-bench-$n.err" >&2 || true
    echo "etcd  clients=$n $ej"
    echo "cpu   clients=$n paxos_cpu_s=$pcpu paxos_committed=$pcommitted paxos_cpu_us_per_write=$(per_write_us "$pcpu" "$pcommitted") etcd_cpu_s=$ecpu etcd_committed=$ecommitted etcd_cpu_us_per_write=$(per_write_us "$ecpu" "$ecommitted")"
    RES[$n]="$load|$pj|$ej|$pcpu|$pcommitted|$ecpu|$ecommitted"
done

# Evidence that etcd fsyncs: its leader's WAL fsync count and mean over all the runs.
if command -v curl >/dev/null; then
    for ep in ${ETCD_EPS//,/ }; do
        m=$(timeout 5 curl -s "http://$ep/metrics" || true)
        if grep -q '^etcd_server_is_leader 1' <<<"$m"; then
            cnt=$(sed -n 's/^etcd_disk_wal_fsync_duration_seconds_count \(.*\)/\1/p' <<<"$m")
            sum=$(sed -n 's/^etcd_disk_wal_fsync_duration_seconds_sum \(.*\)/\1/p' <<<"$m")
            log "etcd leader $ep: $cnt WAL fsyncs, mean $(awk -v s="$sum" -v c="$cnt" 'BEGIN { if (c > 0) printf "%.3f", 1000 * s / c; else printf "-" }') ms"
        fi
    done
fi

ratio() { # ratio A B -> A/B with 2 decimals, "-" if B is zero or missing
    awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "-" }'
}

echo
echo "paxos vs etcd $(etcd --version | head -1 | awk '{print $3}'): ${SIZE} B writes, ${DURATION} s per run, $REPLICAS replicas on loopback, $(nproc) cores"
printf '%7s | %10s %8s %8s %7s %8s | %10s %8s %8s %7s %8s | %7s %6s %7s | %5s\n' \
    clients "paxos op/s" "p50 ms" "p99 ms" "cpu us" committed "etcd op/s" "p50 ms" "p99 ms" "cpu us" committed \
    "op/s x" "p50 x" "cpu x" load
for n in $CLIENTS; do
    IFS='|' read -r load pj ej pcpu pcommitted ecpu ecommitted <<<"${RES[$n]}"
    po=$(jget ops_per_s "$pj"); p5=$(jget p50_ms "$pj"); p9=$(jget p99_ms "$pj")
    eo=$(jget ops_per_s "$ej"); e5=$(jget p50_ms "$ej"); e9=$(jget p99_ms "$ej")
    pw=$(per_write_us "$pcpu" "$pcommitted"); ew=$(per_write_us "$ecpu" "$ecommitted")
    printf '%7s | %10s %8s %8s %7s %8s | %10s %8s %8s %7s %8s | %7s %6s %7s | %5s\n' \
        "$n" "${po:--}" "${p5:--}" "${p9:--}" "$pw" "$pcommitted" "${eo:--}" "${e5:--}" "${e9:--}" "$ew" "$ecommitted" \
        "$(ratio "$po" "$eo")" "$(ratio "$p5" "$e5")" "$(ratio "$pw" "$ew")" "$load"
done
echo "(x = paxos / etcd; op/s x > 1: paxos faster; p50 x and cpu x < 1: paxos lower; cpu us = daemons' user+system CPU per server-side committed write; committed = server-side count during the run; load = 1-min loadavg before the run)"
