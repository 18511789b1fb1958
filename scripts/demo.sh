#!/usr/bin/env bash
# make demo: a short tour of smimed through smimectl. It makes a demo CA and
# two demo people (alice, bob) with openssl in a temporary directory, imports
# alice's PKCS#12 file, trusts the demo CA, adds bob's certificate to the
# address book, then signs, verifies, encrypts and decrypts a message,
# showing each command and the status JSON.
#
# Against a running smimed (found on $DBUS_SESSION_BUS_ADDRESS) it uses that
# daemon: its pinentry asks you for the demo key's passphrase, and alice's
# demo identity and bob's certificate stay in your keystore and address book
# (the demo CA is untrusted again at the end). With no daemon reachable, or
# with DEMO_PRIVATE=1, it starts its own smimed on a private bus with
# throw-away state and a demo pinentry (the test pinentry,
# prompt/pinentry/testpinentry, answering every prompt with a fixed
# passphrase), and stops it afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
PASSPHRASE=demo-passphrase # the demo key's passphrase (the demo pinentry types it)
P12PASSWORD=demo-p12       # the PKCS#12 file's password

work=$(mktemp -d "${TMPDIR:-/tmp}/smimed-demo.XXXXXX")
smimed_pid=
bus_pid=
private=
trusted= # the demo CA is among a running daemon's trust anchors
cleanup() {
  if [[ -n $trusted ]]; then
    smimectl trust remove "$work/pki/ca.pem" >/dev/null 2>&1 || true
  fi
  if [[ -n $smimed_pid ]]; then
    kill -TERM "$smimed_pid" 2>/dev/null || true
    wait "$smimed_pid" 2>/dev/null || true
  fi
  if [[ -n $bus_pid ]]; then
    kill "$bus_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "Building smimed, smimectl and the demo pinentry into $work/bin"
mkdir -p "$work/bin"
"$GO" build -o "$work/bin/smimed" ./cmd/smimed
"$GO" build -o "$work/bin/smimectl" ./cmd/smimectl
"$GO" build -o "$work/bin/demo-pinentry" ./prompt/pinentry/testpinentry
export PATH="$work/bin:$PATH"

reachable=
if [[ -z ${DEMO_PRIVATE:-} ]] && smimectl status >/dev/null 2>&1; then
  reachable=1
fi

if [[ -n $reachable ]]; then
  step "Using the smimed running on $DBUS_SESSION_BUS_ADDRESS"
  cat <<EOF
Its own pinentry will ask you for passphrases:
  - when importing, for a NEW passphrase to protect the demo key: type $PASSPHRASE
  - when signing and decrypting, for that passphrase again.
alice's demo identity and bob's certificate stay in your keystore and
address book afterwards; the demo CA is removed from your trust anchors at
the end. (DEMO_PRIVATE=1 make demo runs
everything against a throw-away daemon instead.)
EOF
else
  private=1
  step "Starting a throw-away smimed on a private bus"
  for tool in dbus-daemon openssl; do
    command -v "$tool" >/dev/null || { echo "demo: $tool is needed (apt-get install ${tool/openssl/openssl})" >&2; exit 1; }
  done
  mkdir -p "$work/bus" "$work/home/data" "$work/home/state" "$work/home/config" "$work/home/cache"
  # No service activation on this bus: the keystore's "auto" backend finds
  # no Secret Service and uses the encrypted-file vault under $work/home.
  write_bus_config "$work/bus" >"$work/bus/bus.conf"
  dbus-daemon --config-file="$work/bus/bus.conf" --fork --nopidfile \
    --print-address=3 --print-pid=4 3>"$work/bus/address" 4>"$work/bus/pid"
  bus_pid=$(head -n1 "$work/bus/pid")
  export DBUS_SESSION_BUS_ADDRESS
  DBUS_SESSION_BUS_ADDRESS=$(head -n1 "$work/bus/address")
  cat <<EOF
Passphrase prompts go to a DEMO PINENTRY: SMIMED_PINENTRY=$work/bin/demo-pinentry,
the test pinentry from prompt/pinentry/testpinentry, which answers every prompt
with TESTPINENTRY_PIN=$PASSPHRASE and logs what it was asked (never the
passphrase) to $work/pinentry.log. A real desktop shows pinentry-gnome3 or
similar instead. State lives under $work/home and is deleted at the end.
EOF
  XDG_DATA_HOME=$work/home/data XDG_STATE_HOME=$work/home/state \
    XDG_CONFIG_HOME=$work/home/config XDG_CACHE_HOME=$work/home/cache \
    SMIMED_PINENTRY=$work/bin/demo-pinentry TESTPINENTRY_PIN=$PASSPHRASE \
    TESTPINENTRY_LOG=$work/pinentry.log \
    smimed >"$work/smimed.log" 2>&1 &
  smimed_pid=$!
  for _ in $(seq 100); do
    smimectl status >/dev/null 2>&1 && break
    if ! kill -0 "$smimed_pid" 2>/dev/null; then
      echo "demo: smimed exited; its log:" >&2
      cat "$work/smimed.log" >&2
      exit 1
    fi
    sleep 0.1
  done
fi
show smimectl status

step "Making a demo CA, alice@demo.example and bob@demo.example with openssl"
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 30 \
  -subj "/O=smimed demo/CN=smimed demo CA" \
  -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for who in alice bob; do
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$who.key" -out "$pki/$who.csr" \
    -subj "/O=smimed demo/CN=$who@demo.example" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=emailProtection" "subjectAltName=email:$who@demo.example" >"$pki/$who.ext"
  openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/$who.ext" -out "$pki/$who.pem" 2>/dev/null
done
printf '%s\n' "$P12PASSWORD" >"$pki/p12-password"
openssl pkcs12 -export -inkey "$pki/alice.key" -in "$pki/alice.pem" -certfile "$pki/ca.pem" \
  -name "alice (demo)" -passout "file:$pki/p12-password" -out "$pki/alice.p12"
rm -f "$pki/alice.key" # from here on alice's key exists only inside smimed's keystore
echo "made $pki/ca.pem, alice.p12 (password in p12-password), bob.pem"

step "Importing alice's PKCS#12 file (the daemon asks for a new passphrase for the key)"
show smimectl import-p12 "$pki/alice.p12" --password-file "$pki/p12-password"
show smimectl identities

step "Trusting the demo CA and adding bob's certificate to the address book"
show smimectl trust add "$pki/ca.pem"
[[ -n $private ]] || trusted=1
show smimectl certs add "$pki/bob.pem"
show smimectl certs find bob@demo.example

msg=$work/message.eml
cat >"$msg" <<'EOF'
From: alice@demo.example
To: bob@demo.example
Subject: smimed demo
Content-Type: text/plain; charset=us-ascii

Hello Bob, this message was signed and encrypted by smimed.
EOF

step "Signing as alice (one passphrase prompt)"
show smimectl sign --from alice@demo.example --in "$msg" --out "$work/signed.eml"
sed -n '1,12p' "$work/signed.eml"
echo "..."

step "Verifying the signed message"
printf '$ %s\n' "smimectl verify --in $work/signed.eml --status-json $work/verify.json >/dev/null"
smimectl verify --in "$work/signed.eml" --status-json "$work/verify.json" >/dev/null
cat "$work/verify.json"
echo "OpenSSL agrees:"
openssl cms -verify -in "$work/signed.eml" -CAfile "$pki/ca.pem" -out /dev/null 2>&1 | sed 's/^/  openssl: /'

step "Signing and encrypting to bob (and alice, the sender, who is always added)"
show smimectl encrypt --to bob@demo.example --sign --from alice@demo.example --in "$msg" --out "$work/encrypted.eml"
sed -n '1,10p' "$work/encrypted.eml"
echo "..."

step "Decrypting as alice (one passphrase prompt) and verifying the signature inside"
show smimectl decrypt --in "$work/encrypted.eml" --out "$work/decrypted.eml" --status-json "$work/decrypt.json"
cat "$work/decrypt.json"
echo "decrypted content:"
sed 's/^/  | /' "$work/decrypted.eml"

if [[ -n $private ]]; then
  step "What the demo pinentry was asked"
  n=$(grep -c . "$work/pinentry.log" || true)
  echo "$n prompts (import: the new passphrase and its repeat; sign; encrypt --sign; decrypt); their descriptions:"
  # Quotes inside the description are JSON-escaped (\"): show them as ' before cutting at the closing quote.
  sed -n -e "s/\\\\\"/'/g" -e 's/.*"cmd":"SETDESC","arg":"\([^"]*\)".*/  - \1/p' "$work/pinentry.log" | sed 's/%0A/ /g; s/\\n/ /g'
  if grep -q -- "$PASSPHRASE" "$work/smimed.log" "$work/pinentry.log" -r "$work/home" 2>/dev/null; then
    echo "demo: the passphrase appears in a log or state file!" >&2
    exit 1
  fi
  echo "(the passphrase appears in no log, audit or state file)"
else
  step "Cleaning up: removing the demo CA from your trust anchors"
  show smimectl trust remove "$pki/ca.pem"
  trusted=
fi

step "Done"
