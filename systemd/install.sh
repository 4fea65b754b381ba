#!/usr/bin/env bash
# Install paxos under systemd: paxosd and paxosctl, /etc/paxos/config.toml, the units.
#
#   sudo systemd/install.sh [--bin-dir DIR] [--config FILE] [--uids 0,1,2]
#                           [--no-enable] [--now] [--force-config] [--no-certs]
#   sudo systemd/install.sh --upgrade [--bin-dir DIR]   # new binaries, rolling restart
#
# Idempotent. An existing /etc/paxos/config.toml is kept unless --force-config.
# When the config has a [tls] section and /etc/paxos/tls/ca.pem does not exist yet, the
# CA and every certificate are issued there (`paxosctl certs --dir /etc/paxos/tls`; keys
# 0600 root, handed to each replica by LoadCredential=); --no-certs skips that.
# Binaries are replaced by rename, so running replicas keep their old executable until
# they restart. --upgrade restarts the enabled replicas one at a time and waits, after
# each, until `paxosctl status` shows it reachable and caught up with the others.
# DESTDIR=/some/root installs into a staging tree (for packaging) and skips systemctl.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir="$here/../target/release"
config_src="$here/config.toml"
uids=""
enable=1
start_now=0
force_config=0
upgrade=0
certs=1
DESTDIR=${DESTDIR:-}
prefix=/usr/local
catchup_timeout_s=${PAXOS_CATCHUP_TIMEOUT_S:-60}

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --config) config_src=${2:?--config needs a file}; shift 2 ;;
        --uids) uids=${2:?--uids needs a list like 0,1,2}; shift 2 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --no-enable) enable=0; shift ;;
        --now) start_now=1; shift ;;
        --force-config) force_config=1; shift ;;
        --upgrade) upgrade=1; shift ;;
        --no-certs) certs=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[ -n "$DESTDIR" ] || [ "$(id -u)" -eq 0 ] || die "run as root (or set DESTDIR for a staging tree)"
for b in paxosd paxosctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found or not executable (build with: cargo build --release --bins)"
done

etc="$DESTDIR/etc/paxos"
unit_dir="$DESTDIR/etc/systemd/system"
bin_dest="$DESTDIR$prefix/bin"
have_systemd=0
[ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && have_systemd=1

# Replace a file by rename: a running paxosd keeps its (old) executable.
install_file() { # mode src dest
    local tmp
    tmp=$(mktemp "$(dirname "$3")/.$(basename "$3").XXXXXX")
    cp "$2" "$tmp"
    chmod "$1" "$tmp"
    mv -f "$tmp" "$3"
}

mkdir -p "$bin_dest" "$etc" "$unit_dir"
install_file 0755 "$bin_dir/paxosd" "$bin_dest/paxosd"
install_file 0755 "$bin_dir/paxosctl" "$bin_dest/paxosctl"
say "installed $bin_dest/paxosd and $bin_dest/paxosctl"

if [ "$upgrade" -eq 0 ]; then
    if [ -e "$etc/config.toml" ] && [ "$force_config" -eq 0 ]; then
        say "kept existing $etc/config.toml (--force-config replaces it)"
    else
        [ -r "$config_src" ] || die "config $config_src not readable"
        install_file 0644 "$config_src" "$etc/config.toml"
        say "installed $etc/config.toml from $config_src"
    fi
    if [ "$certs" -eq 1 ] && grep -q '^[[:space:]]*\[tls\]' "$etc/config.toml" &&
        ! grep -Eq '^[[:space:]]*enabled[[:space:]]*=[[:space:]]*false' "$etc/config.toml"; then
        if [ -e "$etc/tls/ca.pem" ]; then
            say "kept the existing certificates in $etc/tls (rotate with: paxosctl --config /etc/paxos/config.toml certs --dir /etc/paxos/tls --uid N)"
        else
            mkdir -p "$etc/tls"
            chmod 0755 "$etc/tls"
            "$bin_dest/paxosctl" --config "$etc/config.toml" certs --dir "$etc/tls" >&2 ||
                die "issuing certificates into $etc/tls failed"
            say "issued the CA, one certificate per replica and a client certificate in $etc/tls"
        fi
    fi
    install_file 0644 "$here/paxos@.service" "$unit_dir/paxos@.service"
    install_file 0644 "$here/paxos.target" "$unit_dir/paxos.target"
    say "installed $unit_dir/paxos@.service and $unit_dir/paxos.target"
fi

if [ -z "$uids" ]; then
    # One replica per [[replica]] table, uid = position from 0.
    n=$(grep -c '^[[:space:]]*\[\[replica\]\]' "$etc/config.toml" || true)
    [ "$n" -gt 0 ] || die "no [[replica]] table in $etc/config.toml; pass --uids"
    uids=$(seq -s, 0 $((n - 1)))
fi
IFS=, read -r -a uid_list <<<"$uids"
for u in "${uid_list[@]}"; do
    [[ "$u" =~ ^[0-9]+$ ]] || die "bad uid '$u' in --uids"
done

if [ -n "$DESTDIR" ]; then
    say "DESTDIR set: not touching systemd; enable with: systemctl enable paxos@{$uids}.service paxos.target"
    exit 0
fi
if [ "$have_systemd" -eq 1 ]; then
    systemctl daemon-reload
fi

if [ "$upgrade" -eq 1 ]; then
    [ "$have_systemd" -eq 1 ] || die "--upgrade needs a running systemd"
    # Which replica is caught up: the highest decided prefix any reachable replica reports.
    status_field() { # json-line field
        sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" <<<"$1" | tr -d '"'
    }
    for u in "${uid_list[@]}"; do
        if ! systemctl -q is-enabled "paxos@$u.service" 2>/dev/null &&
            ! systemctl -q is-active "paxos@$u.service" 2>/dev/null; then
            say "paxos@$u is neither enabled nor active: skipped"
            continue
        fi
        say "restarting paxos@$u"
        systemctl restart "paxos@$u.service"
        deadline=$((SECONDS + catchup_timeout_s))
        while :; do
            out=$("$prefix/bin/paxosctl" --config /etc/paxos/config.toml status --json 2>/dev/null || true)
            mine=$(grep "\"uid\":$u[,}]" <<<"$out" || true)
            max=0
            while read -r line; do
                [ -n "$line" ] || continue
                [ "$(status_field "$line" reachable)" = true ] || continue
                d=$(status_field "$line" decided)
                [ "${d:-0}" -gt "$max" ] && max=$d
            done <<<"$out"
            if [ -n "$mine" ] && [ "$(status_field "$mine" reachable)" = true ] &&
                [ "$(status_field "$mine" decided)" -ge "$max" ]; then
                say "paxos@$u is back: $mine"
                break
            fi
            [ "$SECONDS" -lt "$deadline" ] ||
                die "paxos@$u did not catch up within ${catchup_timeout_s}s; stopping the rolling restart (see journalctl -u paxos@$u)"
            sleep 0.5
        done
    done
    say "upgrade done"
    exit 0
fi

if [ "$enable" -eq 1 ]; then
    units=()
    for u in "${uid_list[@]}"; do units+=("paxos@$u.service"); done
    systemctl enable -q "${units[@]}" paxos.target
    say "enabled ${units[*]} paxos.target"
    if [ "$start_now" -eq 1 ]; then
        [ "$have_systemd" -eq 1 ] || die "--now needs a running systemd"
        systemctl start paxos.target
        say "started paxos.target"
    else
        say "start with: systemctl start paxos.target   (logs: journalctl -u paxos@${uid_list[0]})"
    fi
fi
