#!/usr/bin/env bash
# What TLS costs: the same local 3-replica cluster (release build, fsync on) once with
# the default gen-config config (mutual TLS) and once with `gen-config --no-tls`
# (plaintext), alternating, REPEATS times, at 1 and 64 clients. Prints one JSON line per
# run, then the median of each (mode, clients) and the TLS/plaintext ratios. The
# machine may be shared: the load average is printed with every run.
#
#   bash bench/tls_cost.sh [DURATION_S] [REPEATS] [SIZE_B]
#   bash bench/tls_cost.sh 10 3 100
#
# Goal (issue 12): at most 10% less throughput at 64 clients, at most +0.05 ms p50 at 1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
repeats=${2:-3}
size=${3:-100}

if command -v flock >/dev/null; then
    flock /tmp/paxos-cargo.lock cargo build --release --bins --locked >&2
else
    cargo build --release --bins --locked >&2
fi
bin=$PWD/target/release
dir=$(mktemp -d /tmp/paxos-tls-cost.XXXXXX)
pids=()
stop_cluster() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_cluster; rm -rf "$dir"' EXIT

free_base() { # three consecutive free ports
    local base p busy
    for base in $(seq 17801 10 18791); do
        busy=0
        for p in $base $((base + 1)) $((base + 2)); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy=1; fi
        done
        [ "$busy" -eq 0 ] && { echo "$base"; return; }
    done
    echo "no free ports" >&2
    exit 1
}

results=$dir/results.jsonl
: >"$results"
for ((r = 1; r <= repeats; r++)); do
    for mode in tls plain; do
        run=$dir/$mode-$r
        mkdir -p "$run"
        flags=()
        [ "$mode" = plain ] && flags=(--no-tls)
        "$bin/paxosctl" gen-config -f 1 --base-port "$(free_base)" "${flags[@]}" -o "$run/config.toml" 2>/dev/null
        sed -i "s|^data_dir = .*|data_dir = \"$run/data\"|" "$run/config.toml"
        for uid in 0 1 2; do
            "$bin/paxosd" --config "$run/config.toml" --uid "$uid" 2>"$run/paxosd-$uid.log" &
            pids+=($!)
        done
        sleep 1
        for n in 1 64; do
            line=$(timeout $((duration + 60)) "$bin/paxosctl" --config "$run/config.toml" \
                bench --clients "$n" --duration "$duration" --size "$size" 2>/dev/null | tail -n 1)
            load=$(cut -d' ' -f1 /proc/loadavg)
            out="{\"mode\":\"$mode\",\"repeat\":$r,\"clients\":$n,\"size\":$size,\"load1\":$load,${line#\{}"
            echo "$out"
            echo "$out" >>"$results"
        done
        stop_cluster
    done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {}
for mode in ("tls", "plain"):
    for n in (1, 64):
        rs = [r for r in rows if r["mode"] == mode and r["clients"] == n]
        if rs:
            med[(mode, n)] = (statistics.median(r["ops_per_s"] for r in rs),
                              statistics.median(r["p50_ms"] for r in rs))
            print(f"# {mode:5} clients={n:2}: median ops/s {med[(mode, n)][0]:.0f}, "
                  f"median p50 {med[(mode, n)][1]:.3f} ms over {len(rs)} runs")
if ("tls", 64) in med and ("plain", 64) in med:
    t, p = med[("tls", 64)][0], med[("plain", 64)][0]
    print(f"# 64 clients: TLS throughput {100 * (t / p - 1):+.1f}% vs plaintext (goal >= -10%)")
if ("tls", 1) in med and ("plain", 1) in med:
    d = med[("tls", 1)][1] - med[("plain", 1)][1]
    print(f"# 1 client: TLS p50 {d:+.3f} ms vs plaintext (goal <= +0.05 ms)")
print(f"# load average now: {open('/proc/loadavg').read().split()[:3]}")
EOF
