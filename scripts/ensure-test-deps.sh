#!/usr/bin/env bash
# System tools the tests use: OpenSSH (a real sshd on loopback), Info-ZIP unzip (checks
# Ketter's archives), util-linux setpriv (runs a case as an unprivileged user).
# Installs from Debian packages when missing and running as root; otherwise says what is missing.
set -euo pipefail
missing=()
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ensure-test-deps: missing ${missing[*]} (install them, or run as root on Debian)" >&2
  fi
fi
if [[ -f scripts/ensure-sshd.sh ]]; then bash scripts/ensure-sshd.sh; fi
