#!/usr/bin/env bash
# Installs the benchmark's tools from Debian packages when missing: nginx
# (the peer and the fixed upstream), wrk (the load generator) and
# redis-server (scenario 6's Redis; with it redis-cli). The packages' own
# nginx and redis-server services are never started: a policy-rc.d denying
# service starts is in place while the packages install (unless one exists
# already), and the benchmark runs each as its own process with its own
# config.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
{ command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; } \
    && command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "bench: installing ${missing[*]} (apt-get)" >&2
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
