#!/usr/bin/env bash
# The nemesis, long form (issue 13): 5 replicas, each in its own network namespace, under
# client load and reads for NEMESIS_SECS (default 300) seconds of random faults:
# symmetric partitions, one-way cuts into the leader, partial connectivity (a pair cut,
# both see the rest), SIGSTOP pauses, kill -9 + restart and one lost disk (kill, wipe the
# data dir, restart). Then the history checker (tests/support/history.rs): every
# acknowledged message exactly once at its reported slot on every replica, real-time
# order of appends, every read linearizable. Prints each fault, the violations and the
# longest window without commits while a connected majority existed.
#
# The harness is the Rust test `nemesis_long` in tests/netns.rs (same code as CI's short
# form). Needs root; installs nftables/iproute2 with apt-get when missing.
#
#   sudo bench/nemesis.sh            # 300 s
#   NEMESIS_SECS=600 NEMESIS_SEED=42 bench/nemesis.sh
#   NEMESIS_TEST=nemesis_short_crashes_and_partitions bench/nemesis.sh   # the CI mix, long
#   NEMESIS_LOST_DISK=0 bench/nemesis.sh   # the full mix without the lost disk
#
# Builds under /tmp/paxos-cargo.lock (one cargo build at a time on the machine); the
# run itself holds no lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "bench/nemesis.sh: needs root (network namespaces, nftables)" >&2
    exit 2
fi
export NEMESIS_SECS=${NEMESIS_SECS:-300}
test_name=${NEMESIS_TEST:-nemesis_long}

# Namespaces of beds whose test process is gone (pxn<I>-<pid>-*): removed on exit too,
# for when this script is interrupted while the test runs (the test cleans up itself
# otherwise, and the next run would clean these anyway).
cleanup() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pxn[0-9]+-[0-9]+-' || true); do
        pid=${ns#pxn*-}
        pid=${pid%%-*}
        if [[ ! -d /proc/$pid ]]; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

flock /tmp/paxos-cargo.lock cargo build --locked --bins
# Run the test binary just built, not `cargo test`: a source edited during the run must
# not start a build outside the lock.
exe=$(flock /tmp/paxos-cargo.lock cargo test --locked --test netns --no-run \
    --message-format=json-render-diagnostics | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[[ -x $exe ]] || { echo "bench/nemesis.sh: no netns test binary built" >&2; exit 1; }
started=$(date +%s)
# Bounded: the run stops itself; this is a backstop of twice the duration plus 5 minutes.
timeout --kill-after=30 $((2 * NEMESIS_SECS + 300)) \
    "$exe" "$test_name" --exact --include-ignored --nocapture
echo "nemesis: done in $(( $(date +%s) - started )) s"
