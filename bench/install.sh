#!/usr/bin/env bash
# Installs the load generator bench/run.sh uses (wrk, from Debian). Idempotent; needs root or sudo.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "bench/install.sh: installing wrk (Debian package)" >&2
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wrk >/dev/null
command -v wrk >/dev/null 2>&1 || { echo "bench/install.sh: wrk still not found after install" >&2; exit 1; }
