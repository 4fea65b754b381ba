#!/usr/bin/env bash
# systemd-analyze verify on systemd/paxos@.service (as instance paxos@0) and
# systemd/paxos.target. verify exits 0 on most mistakes but prints them, so any output
# is a failure. ExecStart's binary must exist where verify runs: the units are copied
# to a temp dir with ExecStart pointing at a placeholder executable.
#
#   bash tests/systemd/verify_units.sh     # silent and exit 0 when clean
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
units=$here/../../systemd
command -v systemd-analyze >/dev/null || { echo "verify_units.sh: systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/paxosd"
chmod +x "$tmp/bin/paxosd"
grep -q '^ExecStart=/usr/local/bin/paxosd --config /etc/paxos/config.toml --uid %i$' "$units/paxos@.service" ||
    { echo "verify_units.sh: unexpected ExecStart= in paxos@.service" >&2; exit 1; }
sed "s#/usr/local/bin/paxosd#$tmp/bin/paxosd#" "$units/paxos@.service" >"$tmp/paxos@.service"
cp "$units/paxos.target" "$tmp/paxos.target"
out=$(cd "$tmp" && timeout 60 systemd-analyze verify "$tmp/paxos@0.service" "$tmp/paxos.target" 2>&1) ||
    { echo "verify_units.sh: systemd-analyze verify failed: $out" >&2; exit 1; }
if [ -n "$out" ]; then
    echo "verify_units.sh: systemd-analyze verify printed (counts as failure):" >&2
    echo "$out" >&2
    exit 1
fi
