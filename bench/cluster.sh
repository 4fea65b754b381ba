#!/usr/bin/env bash
# Cluster benchmark: a local 3-replica cluster (release build, fsync on), then
# `paxosctl bench` at several client counts. Prints one JSON line per run, tagged with
# the client count, and writes an SVG per run next to the data.
#
#   bash bench/cluster.sh [DURATION_S] [SIZE_B] [CLIENTS...]
#   bash bench/cluster.sh 10 100 1 16 64 256
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
size=${2:-100}
shift 2 2>/dev/null || true
clients=("$@")
[[ ${#clients[@]} -gt 0 ]] || clients=(1 16 64 256)

cargo build --release --bins --locked >&2
bin=$PWD/target/release
dir=$(mktemp -d /tmp/paxos-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$bin/paxosctl" gen-config -f 1 --base-port 7701 -o "$dir/config.toml" >&2
sed -i "s|^data_dir = .*|data_dir = \"$dir/data\"|" "$dir/config.toml"
for uid in 0 1 2; do
    "$bin/paxosd" --config "$dir/config.toml" --uid "$uid" 2>"$dir/paxosd-$uid.log" &
    pids+=($!)
done
sleep 1
echo "# $(nproc) cores, $(uname -r), data in $dir, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for n in "${clients[@]}"; do
    line=$(timeout $((duration + 60)) "$bin/paxosctl" --config "$dir/config.toml" \
        bench --clients "$n" --duration "$duration" --size "$size" \
        --plot "$dir/bench-$n.svg" 2>/dev/null | tail -n 1)
    echo "{\"clients\":$n,\"size\":$size,${line#\{}"
done
echo "# SVGs: $dir/bench-*.svg" >&2
