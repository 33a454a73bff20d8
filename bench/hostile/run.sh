#!/usr/bin/env bash
# Tailgate and nginx against hostile input, side by side (`make test-hostile`).
#
# Installs nginx when missing (bench/install-deps.sh), then runs
# bench/hostile/hostile.py: one upstream, nginx and Tailgate with equivalent
# configs (bench/hostile/nginx.conf.in, tailgate.toml.in), the same hostile
# inputs to each (issue 24's classes), one table: what a safe proxy does,
# each proxy's outcome, ok/FAIL. The table also goes to
# bench/results/hostile-<date>.md. Loopback only; about a minute.
#
# Usage: bench/hostile/run.sh [--strict] [--no-write] [--out FILE] [--port-base N]
#   --strict    exit 1 when Tailgate fails a case (default: exit 0, the table
#               is the result)
#   --no-write  print the table only
# TAILGATE_BIN: the binary to try (default target/debug/tailgate; `make
# test-hostile` builds it). HOSTILE_PORT_BASE: first of the 5 ports (28300).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

case "${1:-}" in -h|--help) sed -n '2,17p' "$0"; exit 0 ;; esac

die() { echo "hostile: error: $*" >&2; exit 2; }

"$ROOT/bench/install-deps.sh"
command -v python3 >/dev/null || die "python3 is needed"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || die "nginx not found"
TAILGATE="${TAILGATE_BIN:-$ROOT/target/debug/tailgate}"
[ -x "$TAILGATE" ] || die "$TAILGATE is missing: cargo build -p tailgate"
for p in rate_limit header_rewrite; do
    [ -f "$ROOT/plugins/target/wasm32-wasip2/release/$p.wasm" ] \
        || die "plugin $p.wasm is missing: make plugins"
done

exec python3 -B "$ROOT/bench/hostile/hostile.py" --tailgate "$TAILGATE" --nginx "$NGINX" --root "$ROOT" "$@"
