#!/usr/bin/env bash
# Installs the Debian packages Tailgate's tests need, only those missing:
# `shellcheck` (tests/tests/fly_deploy.rs lints fly/start.sh with it),
# `microsocks` (tests/tests/tailnet_socks5.rs dials upstreams through it),
# `prometheus` (tests/tests/telemetry_*.rs start their own server on a free
# loopback port; a system service the package may start on :9090 is not used),
# `redis-server` (tests/tests/state_redis*.rs start their own on a free loopback
# port for the shared `[state] backend = "redis"`).
# Runs `apt-get update` once, and only when something is missing; prints
# nothing when everything is already there, so `make test` can call it always.
set -euo pipefail

packages=(shellcheck microsocks prometheus redis-server)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: apt-get not found; install these packages by hand: ${missing[*]}" >&2
  exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-test-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
