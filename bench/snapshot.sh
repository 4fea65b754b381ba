#!/usr/bin/env bash
# Snapshot benchmark: a local 3-replica cluster (release build, fsync on) filled with
# `paxosctl bench` until replica 0 has decided SLOTS slots, then `paxosctl snapshot save`
# from replica 0 while its VmRSS is sampled every 50 ms, then `snapshot status` (a full
# check) and one `snapshot restore` into a fresh directory. Prints one JSON line.
#
#   bash bench/snapshot.sh [SLOTS] [SIZE_B] [BASE_PORT]
#   bash bench/snapshot.sh 1000000 100
set -euo pipefail
cd "$(dirname "$0")/.."
slots=${1:-1000000}
size=${2:-100}
base_port=${3:-7801}

cargo build --release --bins --locked >&2
bin=$PWD/target/release
dir=$(mktemp -d /tmp/paxos-snapshot-bench.XXXXXX)
pids=()
sampler=
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$bin/paxosctl" gen-config -f 1 --base-port "$base_port" -o "$dir/config.toml" >&2
sed -i "s|^data_dir = .*|data_dir = \"$dir/data\"|" "$dir/config.toml"
for uid in 0 1 2; do
    "$bin/paxosd" --config "$dir/config.toml" --uid "$uid" 2>"$dir/paxosd-$uid.log" &
    pids+=($!)
done
sleep 1
ctl() { "$bin/paxosctl" --config "$dir/config.toml" "$@"; }
decided() { ctl status --json 2>/dev/null | grep '"uid":0,' | sed 's/.*"decided":\([0-9]*\).*/\1/'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
since() { printf '%.3f' "$(echo "$(date +%s.%N) - $1" | bc)"; }

echo "# $(nproc) cores, $(uname -r), data in $dir, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fill_started=$(date +%s.%N)
while :; do
    have=$(decided || echo 0)
    [[ ${have:-0} -ge $slots ]] && break
    echo "# filling: $have of $slots slots decided" >&2
    timeout 120 "$bin/paxosctl" --config "$dir/config.toml" \
        bench --clients 256 --duration 15 --size "$size" >/dev/null 2>&1 || true
done
fill_s=$(since "$fill_started")
echo "# filled $(decided) slots in $fill_s s" >&2

leader_pid=${pids[0]}
rss_before=$(rss_kib "$leader_pid")
( while :; do rss_kib "$leader_pid"; sleep 0.05; done ) >"$dir/rss.txt" 2>/dev/null &
sampler=$!
started=$(date +%s.%N)
ctl snapshot save --uid 0 "$dir/log.snap" >&2
save_s=$(since "$started")
kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=
rss_peak=$(sort -n "$dir/rss.txt" | tail -n 1)
bytes=$(stat -c %s "$dir/log.snap")
entries=$("$bin/paxosctl" snapshot status --json "$dir/log.snap" | sed 's/.*"entries":\([0-9]*\).*/\1/')

started=$(date +%s.%N)
"$bin/paxosctl" snapshot status "$dir/log.snap" >&2
status_s=$(since "$started")
started=$(date +%s.%N)
ctl snapshot restore "$dir/log.snap" --data-dir "$dir/restored" --uid 0 >&2
restore_s=$(since "$started")

echo "{\"entries\":$entries,\"size_b\":$size,\"save_s\":$save_s,\"file_bytes\":$bytes,\"rss_before_kib\":$rss_before,\"rss_peak_during_save_kib\":$rss_peak,\"rss_samples\":$(wc -l <"$dir/rss.txt"),\"status_s\":$status_s,\"restore_s\":$restore_s,\"restored_store_bytes\":$(du -sb "$dir/restored" | cut -f1)}"
