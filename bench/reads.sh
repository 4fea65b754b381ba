#!/usr/bin/env bash
# Read latency, linearizable vs stale, paxos vs etcd, on one machine (issue 13, Deliver 4).
#
# A read is small: the tail of the log. paxos: `paxosctl bench --read MODE --uid U
# --tail TAIL`, each read the last TAIL applied slots of replica U (linearizable: a read
# index through the leader, then the page, as `dump-log`; stale: the page as the replica
# has it, as `dump-log --stale`). etcd: `etcd-bench --read l|s --keys TAIL`, each read a
# range get of TAIL keys of SIZE bytes (l: etcd's default linearizable read, a ReadIndex
# round through the leader; s: `--consistency=s`, the member's local store). Both from
# the leader and from a follower, on an idle cluster and under write load (LOAD_CLIENTS
# closed-loop writers: `paxosctl bench` / `etcd-bench` puts, running alongside).
#
#   bash bench/reads.sh                         # 10 s per point, 1 reader, tail 256, load 64
#   DURATION=5 READ_CLIENTS=4 bash bench/reads.sh
#
# Output: one JSON line per point on stdout,
#   {"system":"paxos","load":"idle","target":"follower","mode":"linearizable","loadavg":0.8,
#    "ops_per_s":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..,"errors":..}
# then a table (loadavg = 1-min load average before the point).
#
# Knobs (environment):
#   DURATION=10          seconds per read run (a write load runs 4 s longer around it)
#   READ_CLIENTS=1       concurrent readers, each with one read in flight
#   TAIL=256             slots (paxos) / keys (etcd) per read
#   SIZE=100             message / value bytes
#   LOAD_CLIENTS=64      writers of the "write" load
#   LOADS="idle write"   which loads to run
#   SYSTEMS="paxos etcd" which systems to run
#   PAXOS_TLS=1          1 = mutual TLS (gen-config's default, as compare_etcd.sh); 0 = --no-tls
#   PAXOS_BASE_PORT=7521 ETCD_CLIENT_BASE=23811 ETCD_PEER_BASE=23821
#   WORK_PARENT=/tmp     where the temp dir goes
#   KEEP=1               keep the temp dir
#
# Needs target/release/paxosd, paxosctl (never builds the main crate) and
# bench/etcd/target/release/etcd-bench (built as compare_etcd.sh does if missing);
# installs Debian's etcd-server/etcd-client if etcd is missing. Everything it starts is
# bounded by `timeout` and killed by PID on exit.
set -euo pipefail

DURATION=${DURATION:-10}
READ_CLIENTS=${READ_CLIENTS:-1}
TAIL=${TAIL:-256}
SIZE=${SIZE:-100}
LOAD_CLIENTS=${LOAD_CLIENTS:-64}
LOADS=${LOADS:-"idle write"}
SYSTEMS=${SYSTEMS:-"paxos etcd"}
PAXOS_TLS=${PAXOS_TLS:-1}
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-7521}
ETCD_CLIENT_BASE=${ETCD_CLIENT_BASE:-23811}
ETCD_PEER_BASE=${ETCD_PEER_BASE:-23821}
WORK_PARENT=${WORK_PARENT:-${TMPDIR:-/tmp}}
KEEP=${KEEP:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAXOSD=$REPO/target/release/paxosd
PAXOSCTL=$REPO/target/release/paxosctl
ETCD_BENCH=$REPO/bench/etcd/target/release/etcd-bench
LIFETIME=$(( (DURATION + 20) * 16 + 300 ))
RUN_TIMEOUT=$(( DURATION + 60 ))

log() { printf '%s\n' "reads: $*" >&2; }
die() { log "error: $*"; exit 1; }

for b in "$PAXOSD" "$PAXOSCTL"; do
    [[ -x $b ]] || die "$b missing: build the main crate first (cargo build --release)"
done
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    log "installing etcd-server etcd-client (Debian)"
    timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >&2 \
        || die "cannot install etcd-server/etcd-client"
fi
if [[ ! -x $ETCD_BENCH ]]; then
    command -v protoc >/dev/null || timeout 600 env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y protobuf-compiler >&2 || die "cannot install protobuf-compiler"
    log "building bench/etcd (nice -n 19 cargo build --release, under /tmp/paxos-cargo.lock)"
    (cd "$REPO/bench/etcd" && timeout 1800 flock /tmp/paxos-cargo.lock nice -n 19 cargo build --release >&2) \
        || die "bench/etcd build failed"
fi

if command -v ss >/dev/null; then
    listening=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    for i in 0 1 2; do
        for p in $((PAXOS_BASE_PORT + i)) $((ETCD_CLIENT_BASE + i)) $((ETCD_PEER_BASE + i)); do
            grep -qx "$p" <<<"$listening" && die "port $p is already in use"
        done
    done
fi

WORK=$(mktemp -d "$WORK_PARENT/reads.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
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
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- paxos: 3 replicas ---------------------------------------------------------------
mkdir -p "$WORK/paxos"
PAXOS_CONF=$WORK/paxos.toml
tls_flag=()
[[ $PAXOS_TLS == 1 ]] || tls_flag=(--no-tls)
timeout 30 "$PAXOSCTL" gen-config -f 1 --base-port "$PAXOS_BASE_PORT" "${tls_flag[@]}" -o "$PAXOS_CONF" >&2
sed -i "s|^data_dir = .*|data_dir = \"$WORK/paxos\"|" "$PAXOS_CONF"
grep -q "^data_dir = \"$WORK/paxos\"" "$PAXOS_CONF" || die "could not set data_dir in $PAXOS_CONF"
for uid in 0 1 2; do
    timeout -k 5 "$LIFETIME" "$PAXOSD" --config "$PAXOS_CONF" --uid "$uid" >"$WORK/paxosd-$uid.out" 2>&1 &
    PIDS+=($!)
done

# ---- etcd: 3 members -----------------------------------------------------------------
ETCD_EPS="" INITIAL=""
for i in 1 2 3; do
    ETCD_EPS+="${ETCD_EPS:+,}127.0.0.1:$((ETCD_CLIENT_BASE + i - 1))"
    INITIAL+="${INITIAL:+,}e$i=http://127.0.0.1:$((ETCD_PEER_BASE + i - 1))"
done
for i in 1 2 3; do
    c=$((ETCD_CLIENT_BASE + i - 1)); p=$((ETCD_PEER_BASE + i - 1))
    mkdir -p "$WORK/etcd/e$i"
    timeout -k 5 "$LIFETIME" etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$INITIAL" --initial-cluster-state new \
        --initial-cluster-token "reads-$$" --logger zap >"$WORK/etcd-$i.out" 2>&1 &
    PIDS+=($!)
done

ready=0
for _ in $(seq 60); do
    timeout 10 "$PAXOSCTL" --config "$PAXOS_CONF" submit "reads warm-up" >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -n 20 "$WORK"/paxosd-*.out >&2; die "paxos cluster did not come up"; }
ready=0
for _ in $(seq 60); do
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$ETCD_EPS" --command-timeout=5s put reads_warmup x \
        >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.5
done
[[ $ready == 1 ]] || { tail -n 20 "$WORK"/etcd-*.out >&2; die "etcd cluster did not come up"; }
log "$(etcd --version | head -1), $("$PAXOSCTL" --version), TLS for paxos: $PAXOS_TLS"

# A log longer than the tail before the first read.
timeout -k 5 "$RUN_TIMEOUT" "$PAXOSCTL" --config "$PAXOS_CONF" bench --clients 16 --duration 2 \
    --size "$SIZE" >/dev/null 2>"$WORK/prefill.err" || die "prefill failed: $(tail -2 "$WORK/prefill.err")"

paxos_role() { # paxos_role leader|follower -> a uid in that role
    timeout 10 "$PAXOSCTL" --config "$PAXOS_CONF" status --json 2>/dev/null \
        | grep "\"role\":\"$1\"" | sed -n 's/.*"uid":\([0-9]*\).*/\1/p' | head -n 1
}

LOAD_PID=
start_load() { # start_load SYSTEM: LOAD_CLIENTS writers for DURATION + 4 s, in the background
    local secs=$((DURATION + 4))
    if [[ $1 == paxos ]]; then
        timeout -k 5 "$RUN_TIMEOUT" "$PAXOSCTL" --config "$PAXOS_CONF" bench --clients "$LOAD_CLIENTS" \
            --duration "$secs" --size "$SIZE" >"$WORK/load.out" 2>"$WORK/load.err" &
    else
        timeout -k 5 "$RUN_TIMEOUT" "$ETCD_BENCH" --endpoints "$ETCD_EPS" --target-leader \
            --clients "$LOAD_CLIENTS" --duration "$secs" --size "$SIZE" >"$WORK/load.out" 2>"$WORK/load.err" &
    fi
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
    sleep 2
}
stop_load() {
    [[ -n $LOAD_PID ]] || return 0
    wait "$LOAD_PID" 2>/dev/null || true
    log "  write load: $(tail -n 1 "$WORK/load.out" 2>/dev/null)"
    LOAD_PID=
}

jget() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"; }
ROWS=()
point() { # point SYSTEM LOAD TARGET MODE
    local system=$1 load=$2 target=$3 mode=$4 la j
    la=$(cut -d' ' -f1 /proc/loadavg)
    if [[ $system == paxos ]]; then
        local uid
        uid=$(paxos_role "$target")
        [[ -n $uid ]] || die "no paxos $target"
        j=$(timeout -k 5 "$RUN_TIMEOUT" "$PAXOSCTL" --config "$PAXOS_CONF" bench --read "$mode" \
            --uid "$uid" --tail "$TAIL" --clients "$READ_CLIENTS" --duration "$DURATION" \
            2>"$WORK/read.err" | tail -n 1) || true
    else
        local flag=--target-leader
        [[ $target == follower ]] && flag=--target-follower
        local m=l
        [[ $mode == stale ]] && m=s
        j=$(timeout -k 5 "$RUN_TIMEOUT" "$ETCD_BENCH" --endpoints "$ETCD_EPS" "$flag" --read "$m" \
            --keys "$TAIL" --size "$SIZE" --clients "$READ_CLIENTS" --duration "$DURATION" \
            2>"$WORK/read.err" | tail -n 1) || true
    fi
    grep -h "errors; the first" "$WORK/read.err" >&2 || true
    [[ $j == \{* ]] || { tail -n 3 "$WORK/read.err" >&2; j='{}'; }
    local line="{\"system\":\"$system\",\"load\":\"$load\",\"target\":\"$target\",\"mode\":\"$mode\",\"clients\":$READ_CLIENTS,\"tail\":$TAIL,\"loadavg\":$la,${j#\{}"
    [[ $j == '{}' ]] && line="${line%,\}}}"
    echo "$line"
    ROWS+=("$line")
}

for system in $SYSTEMS; do
    for load in $LOADS; do
        for target in leader follower; do
            for mode in linearizable stale; do
                log "$system, $load, from the $target, $mode"
                [[ $load == write ]] && start_load "$system"
                point "$system" "$load" "$target" "$mode"
                stop_load
            done
        done
    done
done

echo
echo "read latency: tail of $TAIL slots/keys of $SIZE B, $READ_CLIENTS reader(s), ${DURATION} s per point, 3 replicas/members on loopback, $(nproc) cores; write load = $LOAD_CLIENTS closed-loop writers"
printf '%-6s %-6s %-9s %-13s | %9s %8s %8s %8s | %7s\n' system load from mode "reads/s" "p50 ms" "p99 ms" "max ms" loadavg
for r in "${ROWS[@]}"; do
    printf '%-6s %-6s %-9s %-13s | %9s %8s %8s %8s | %7s\n' \
        "$(sed -n 's/.*"system":"\([a-z]*\)".*/\1/p' <<<"$r")" "$(sed -n 's/.*"load":"\([a-z]*\)".*/\1/p' <<<"$r")" \
        "$(sed -n 's/.*"target":"\([a-z]*\)".*/\1/p' <<<"$r")" "$(sed -n 's/.*"mode":"\([a-z]*\)".*/\1/p' <<<"$r")" \
        "$(jget ops_per_s "$r")" "$(jget p50_ms "$r")" "$(jget p99_ms "$r")" "$(jget max_ms "$r")" "$(jget loadavg "$r")"
done
