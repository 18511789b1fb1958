#!/usr/bin/env bash
# make run: builds smimed and smimectl into bin/ and runs smimed in the
# foreground on your session bus, with its embedded defaults (state under
# $XDG_DATA_HOME/smimed, config from $XDG_CONFIG_HOME/smimed/config.toml or
# $SMIMED_CONFIG). Arguments are passed to smimed (e.g. --log-level debug).
#
# With no reachable session bus (DBUS_SESSION_BUS_ADDRESS unset, or nothing
# answering there), it starts a private dbus-daemon, prints the
# `export DBUS_SESSION_BUS_ADDRESS=...` line to paste into another terminal
# (where `bin/smimectl status` then finds the daemon), and stops both on
# Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}

mkdir -p "$BIN"
echo "run: building $BIN/smimed and $BIN/smimectl" >&2
"$GO" build -o "$BIN/smimed" ./cmd/smimed
"$GO" build -o "$BIN/smimectl" ./cmd/smimectl

# bus_reachable ADDRESS: does a bus answer at ADDRESS?
bus_reachable() {
  [[ -n $1 ]] || return 1
  if command -v dbus-send >/dev/null 2>&1; then
    timeout 5 dbus-send --bus="$1" --print-reply --dest=org.freedesktop.DBus \
      /org/freedesktop/DBus org.freedesktop.DBus.GetId >/dev/null 2>&1
  else
    return 0 # cannot tell; let smimed try
  fi
}

if bus_reachable "${DBUS_SESSION_BUS_ADDRESS:-}"; then
  if "$BIN/smimectl" status >/dev/null 2>&1; then
    echo "run: smimed is already running on this session bus ($BIN/smimectl status shows it)." >&2
    echo "run: stop it first (systemctl --user stop smimed, or Ctrl-C in its terminal)." >&2
    exit 1
  fi
  echo "run: smimed on the session bus $DBUS_SESSION_BUS_ADDRESS (Ctrl-C stops it)" >&2
  exec "$BIN/smimed" "$@"
fi

if ! command -v dbus-daemon >/dev/null 2>&1; then
  echo "run: no session bus, and no dbus-daemon to start one (apt-get install dbus-daemon)" >&2
  exit 1
fi

# write_bus_config DIR: a session bus configuration listening in DIR, with
# no service activation.
write_bus_config() {
  printf '%s\n' \
    '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"' \
    ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">' \
    '<busconfig>' \
    '  <type>session</type>' \
    "  <listen>unix:dir=$1</listen>" \
    '  <auth>EXTERNAL</auth>' \
    '  <policy context="default">' \
    '    <allow send_destination="*" eavesdrop="true"/>' \
    '    <allow eavesdrop="true"/>' \
    '    <allow own="*"/>' \
    '  </policy>' \
    '</busconfig>'
}

busdir=$(mktemp -d "${TMPDIR:-/tmp}/smimed-run.XXXXXX")
buspid=
cleanup() {
  if [[ -n $buspid ]]; then
    kill "$buspid" 2>/dev/null || true
  fi
  rm -rf "$busdir"
}
trap cleanup EXIT

# A session bus without service activation: nothing else (gnome-keyring
# without a login keyring, say) is started behind smimed's back, so the
# keystore's "auto" backend finds no Secret Service and uses the file vault.
write_bus_config "$busdir" >"$busdir/bus.conf"
dbus-daemon --config-file="$busdir/bus.conf" --fork --nopidfile \
  --print-address=3 --print-pid=4 3>"$busdir/address" 4>"$busdir/pid"
buspid=$(head -n1 "$busdir/pid")
address=$(head -n1 "$busdir/address")
export DBUS_SESSION_BUS_ADDRESS=$address

cat >&2 <<EOF
run: no session bus was reachable, so a private one was started (dbus-daemon pid $buspid).
run: to talk to smimed from another terminal, paste:

export DBUS_SESSION_BUS_ADDRESS='$address'

run: then e.g. '$BIN/smimectl status' or 'make demo'. Ctrl-C here stops smimed and this bus.
EOF

# smimed runs as our child, not exec'd, so that the bus is stopped after
# it. Ctrl-C (SIGINT) or SIGTERM to this script becomes one SIGTERM to
# smimed, which lets in-flight requests finish and exits.
"$BIN/smimed" "$@" &
smimed_pid=$!
trap 'kill -TERM "$smimed_pid" 2>/dev/null || true' INT TERM
status=0
wait "$smimed_pid" || status=$?
while kill -0 "$smimed_pid" 2>/dev/null; do # wait was interrupted by a signal
  status=0
  wait "$smimed_pid" || status=$?
done
exit "$status"
