#!/usr/bin/env bash
# Make sure an OpenSSH server and client are installed, for the SFTP adapter's tests,
# which start a throwaway sshd on a loopback port. Idempotent: installs nothing when
# /usr/sbin/sshd is already there. Needs root (or sudo) only when it has to install.
set -euo pipefail

if [[ -x /usr/sbin/sshd ]] && command -v ssh-keygen >/dev/null 2>&1; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "ensure-sshd: /usr/sbin/sshd is missing and this user cannot install packages (run as root)" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-sshd: /usr/sbin/sshd is missing and apt-get is not available; install OpenSSH server by hand" >&2
  exit 1
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# --no-install-recommends keeps out ncurses-term, xauth and friends that tests never need;
# policy-rc.d-free containers may try to start the service: that is harmless (tests run their own).
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  openssh-server openssh-client >/dev/null

if [[ ! -x /usr/sbin/sshd ]]; then
  echo "ensure-sshd: installation finished but /usr/sbin/sshd is still missing" >&2
  exit 1
fi
