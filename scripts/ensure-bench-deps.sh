#!/usr/bin/env bash
# Make sure the peers of the SFTP benchmark are installed: rclone, rsync, the OpenSSH client
# (ssh, scp, sftp) and server (sshd), and GNU time (peak RSS). Idempotent: installs nothing
# when everything is there. Installs from Debian only, and only as root (or with sudo -n);
# otherwise it says what is missing and exits 1, and the benchmark skips those peers.
set -euo pipefail

missing=()
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
{ command -v ssh >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 && command -v sftp >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; } || missing+=(openssh-client)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
[[ -x /usr/bin/time ]] || missing+=(time)

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "ensure-bench-deps: missing ${missing[*]} and this user cannot install packages (run as root)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-bench-deps: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
  exit 1
fi

echo "ensure-bench-deps: installing ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# --no-install-recommends keeps out fuse3 and friends that rclone recommends but the bench never uses.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" >/dev/null
