#!/usr/bin/env bash
# Installs, from Debian's packages, every real peer the tests run against,
# when it is missing. Needs root (or passwordless sudo) only when something
# must be installed. Safe to run again: it does nothing when all is present.
set -euo pipefail

# command-or-file  package
needs=(
  "openssl openssl"
  "/etc/ssl/certs/ca-certificates.crt ca-certificates"
  "cmsutil libnss3-tools"
  "certutil libnss3-tools"
  "pk12util libnss3-tools"
  "/usr/lib/thunderbird/libsmime3.so thunderbird"
  "gpgsm gpgsm"
  "gpg-agent gpg-agent"
  "tmux tmux"
  "pinentry-tty pinentry-tty"
  "pinentry-curses pinentry-curses"
  "dbus-daemon dbus-daemon"
  "gnome-keyring-daemon gnome-keyring"
  "secret-tool libsecret-tools"
  "systemd-analyze systemd"
  "softhsm2-util softhsm2"
  "pkcs11-tool opensc"
  "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so opensc-pkcs11"
  "gcc gcc"
  "/usr/include/stdio.h libc6-dev"
  "/usr/sbin/slapd slapd"
  "ldapsearch ldap-utils"
)

missing=()
for entry in "${needs[@]}"; do
  what=${entry% *} pkg=${entry#* }
  if [[ $what == /* ]]; then
    [[ -e $what ]] && continue
  else
    command -v "$what" >/dev/null 2>&1 && continue
  fi
  missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-test-deps: installing ${missing[*]}" >&2

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "install-test-deps: need root to install: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
