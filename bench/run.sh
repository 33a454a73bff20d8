#!/usr/bin/env bash
# Tailgate against nginx, side by side on this machine (`make bench`).
#
# Starts a fixed upstream (nginx serving a 1 KiB and a 100 KiB body), nginx
# as the peer proxy and Tailgate with equivalent configs (bench/nginx/,
# bench/tailgate/), one worker each, then drives them with wrk in
# alternation (A B A B ..., --rounds each) and prints one table: requests/s,
# p50/p99 latency, proxy CPU time per request, proxy peak RSS, and the ratio
# Tailgate / peer. The table and every sample go to bench/results/.
#
# Scenarios:
#   1 pass-through  Host routing, two response headers added, two request
#                   headers set (X-Real-IP from the client address, so
#                   header-rewrite's request hook runs), per-client-IP
#                   rate limit that never rejects, one JSON access-log
#                   line per request
#   2 cache         1 with the cache warmed (nginx proxy_cache)
#   3 tls           1 behind a TLS listener
#   4 plugins       Tailgate with the three plugins vs. with none, and
#                   nginx (scenario 1's config) as a third side in the
#                   same rounds: the plugin-free route against nginx
#   5 ban           Tailgate with the ban plugin alone (one jail watching
#                   ^/user/login for 401/403: every request pays the ban
#                   check in on-request and the on-log observer, nothing is
#                   banned) vs. with no plugins; the CPU per request
#                   difference is the ban check's cost (issue 25: a few µs)
#   6 state backends  Tailgate only (nginx has no equivalent): the route
#                   with the rate-limit plugin alone (scenario 1's limit,
#                   never rejecting; bench/tailgate/state.toml.in) three
#                   times, A B C A B C: [state] backend = "local", "redis"
#                   with consistency = "exact" and "redis" with "sync"
#                   (sync_interval 1s), both on one redis-server started on
#                   a free loopback port (killed by PID at the end); each
#                   Redis mode's difference from local (CPU µs/req, p99,
#                   req/s) is its cost per request, Redis's own CPU beside
#                   (bench/results/ gets a table of it)
# Then idle connections: RSS of nginx and Tailgate (scenario 1's configs)
# before, with --idle-connections N idle keep-alive connections open (one
# request each) and 10 s after they closed (bench/idle_connections.py).
#
# Usage: bench/run.sh [--smoke] [--rounds N] [--duration SECONDS]
#                     [--connections N] [--scenarios "1 2 3 4 5 6"]
#                     [--bodies "1k 100k"] [--out FILE] [--no-build]
#                     [--idle-connections N]   (default 3000; 0: skip)
#   --smoke   one 1-second round of scenario 1 (or of --scenarios, given
#             before or after it), 1 KiB; nothing written to bench/results/
#             (checks the script works)
# Scenario 6 needs redis-server (bench/install-deps.sh installs the Debian
# package) and 3 more ports: 12 from BENCH_PORT_BASE (default 28100).
# Before the runs it waits, up to BENCH_SETTLE_SECONDS (default 150), for
# the 1-minute load average to fall below 0.5.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"

ROUNDS=3
DURATION=10
CONNECTIONS=32
SCENARIOS="1 2 3 4 5 6"
BODIES="1k 100k"
OUT=""
BUILD=1
SMOKE=0
SCENARIOS_GIVEN=""
IDLE_CONNECTIONS=3000
PORT_BASE="${BENCH_PORT_BASE:-28100}"

while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; ROUNDS=1; DURATION=1; SCENARIOS="1"; BODIES="1k"; BENCH_SETTLE_SECONDS=0; IDLE_CONNECTIONS=100 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --scenarios) SCENARIOS_GIVEN="$2"; shift ;;
        --bodies) BODIES="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --no-build) BUILD=0 ;;
        --idle-connections) IDLE_CONNECTIONS="$2"; shift ;;
        -h|--help) sed -n '2,49p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$SCENARIOS_GIVEN" ]; then SCENARIOS="$SCENARIOS_GIVEN"; fi

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

"$BENCH/install-deps.sh"
command -v python3 >/dev/null || die "python3 is needed to write the table"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || die "nginx not found"

if [ "$BUILD" = 1 ]; then
    log "building the release binary and the plugins"
    (cd "$ROOT" && cargo build --release -q -p tailgate)
    (cd "$ROOT/plugins" && cargo build --release -q)
fi
# TAILGATE_BIN: another build (e.g. target/debug/tailgate to try the script).
TAILGATE="${TAILGATE_BIN:-$ROOT/target/release/tailgate}"
[ -x "$TAILGATE" ] || die "$TAILGATE is missing: cargo build --release -p tailgate"
BENCH_PLUGINS="rate_limit header_rewrite log_shape"
case " $SCENARIOS " in *" 5 "*) BENCH_PLUGINS="$BENCH_PLUGINS ban" ;; esac
case " $SCENARIOS " in *" 6 "*)
    REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
    [ -x "$REDIS_SERVER" ] || die "redis-server not found (scenario 6)"
    command -v redis-cli >/dev/null || die "redis-cli not found (scenario 6)" ;;
esac
for p in $BENCH_PLUGINS; do
    [ -f "$ROOT/plugins/target/wasm32-wasip2/release/$p.wasm" ] \
        || die "plugin $p.wasm is missing: make plugins"
done

# Ports: upstream, nginx (http, https), tailgate A and B (http, https,
# admin), and for scenario 6 a third tailgate C (http, https, admin).
UPSTREAM_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1)); NGINX_TLS_PORT=$((PORT_BASE + 2))
TG_PORT=$((PORT_BASE + 3)); TG_TLS_PORT=$((PORT_BASE + 4)); TG_ADMIN_PORT=$((PORT_BASE + 5))
TG2_PORT=$((PORT_BASE + 6)); TG2_TLS_PORT=$((PORT_BASE + 7)); TG2_ADMIN_PORT=$((PORT_BASE + 8))
TG3_PORT=$((PORT_BASE + 9)); TG3_TLS_PORT=$((PORT_BASE + 10)); TG3_ADMIN_PORT=$((PORT_BASE + 11))
PORT_COUNT=9
case " $SCENARIOS " in *" 6 "*) PORT_COUNT=12 ;; esac
for port in $(seq "$PORT_BASE" $((PORT_BASE + PORT_COUNT - 1))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is in use (set BENCH_PORT_BASE to move the $PORT_COUNT ports)"
    fi
done

RUN="$(mktemp -d /tmp/tailgate-bench.XXXXXX)"
SAMPLES="$RUN/samples.tsv"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # The access logs reach ~1 GB over a full run; BENCH_KEEP_LOGS=1 keeps them.
    if [ -z "${BENCH_KEEP_LOGS:-}" ]; then rm -f "$RUN"/logs/*access.log; fi
}
trap cleanup EXIT
log "run folder: $RUN"

# Access logs go to their own folder: Tailgate watches its config's folder
# for changes (reload), and a log written next to the config would wake its
# watcher on every batch, work nginx does not do.
mkdir -p "$RUN/www" "$RUN/nginx-tmp" "$RUN/nginx-cache" "$RUN/plugin-cache" "$RUN/logs"
head -c 1024 /dev/zero | tr '\0' 'a' >"$RUN/www/1k"
head -c 102400 /dev/zero | tr '\0' 'b' >"$RUN/www/100k"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null

NGINX_USER=""
if [ "$(id -u)" -eq 0 ]; then NGINX_USER="user root;"; fi

# render TEMPLATE OUT PORT TLS_PORT ADMIN_PORT CACHE [STATE]
# (STATE: scenario 6's [state] table, lines separated by \n, for @STATE@)
render() {
    sed -e "s|@RUN@|$RUN|g" -e "s|@ROOT@|$ROOT|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@PORT@|$3|g" \
        -e "s|@TLS_PORT@|$4|g" -e "s|@ADMIN_PORT@|$5|g" -e "s|@CACHE@|$6|g" \
        -e "s|@STATE@|${7:-}|g" -e "s|@USER@|$NGINX_USER|g" \
        "$1" >"$2"
}

wait_port() {
    local i
    for i in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 after 30 s (logs in $RUN)"
}

# Every process of a proxy: the PID and its children (nginx's workers).
proc_tree() { echo "$1" $(pgrep -P "$1" || true); }
# cpu_ticks PID -> "USER SYSTEM": clock ticks of the proxy's processes.
cpu_ticks() {
    local user=0 system=0 pid u s
    for pid in $(proc_tree "$1"); do
        read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null || echo 0 0)
        user=$((user + u)); system=$((system + s))
    done
    echo "$user $system"
}
# machine_ticks -> "BUSY IDLE": clock ticks of every core (/proc/stat), busy
# (user, nice, system, irq, softirq, steal) and idle (idle, iowait).
machine_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat
}
peak_rss_kib() {
    local total=0 pid k
    for pid in $(proc_tree "$1"); do
        k=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + k))
    done
    echo "$total"
}

start_upstream() {
    render "$BENCH/nginx/upstream.conf.in" "$RUN/upstream.conf" 0 0 0 ""
    "$NGINX" -p "$RUN" -c "$RUN/upstream.conf" &
    PIDS+=($!)
    wait_port "$UPSTREAM_PORT"
}

# start_nginx CACHE_INC -> sets PROXY_PID
start_nginx() {
    echo "$1" >"$RUN/cache.inc"
    render "$BENCH/nginx/proxy.conf.in" "$RUN/nginx.conf" "$NGINX_PORT" "$NGINX_TLS_PORT" 0 ""
    "$NGINX" -p "$RUN" -c "$RUN/nginx.conf" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$NGINX_PORT"
}

# start_tailgate TEMPLATE NAME PORT TLS_PORT ADMIN_PORT CACHE [STATE] -> sets PROXY_PID
start_tailgate() {
    render "$1" "$RUN/$2.toml" "$3" "$4" "$5" "$6" "${7:-}"
    "$TAILGATE" run --config "$RUN/$2.toml" >"$RUN/logs/$2-access.log" 2>"$RUN/$2-stderr.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$3"
}

# Scenario 6: a free loopback port (the kernel's pick, then released).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_redis -> sets REDIS_PORT and REDIS_PID: no persistence, foreground.
start_redis() {
    REDIS_PORT=$(free_port)
    "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$RUN" >"$RUN/logs/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT"
    [ "$(redis-cli -p "$REDIS_PORT" ping)" = PONG ] || die "redis-server on $REDIS_PORT does not answer PING"
}

# state_table MODE: scenario 6's [state] table (\n-separated) for render.
state_table() {
    local t="[state]\\ndir = \"$RUN/state-$1\""
    case "$1" in
        local) t="$t\\nbackend = \"local\"" ;;
        redis-exact|redis-sync)
            t="$t\\nbackend = \"redis\"\\nurl = \"redis://127.0.0.1:$REDIS_PORT\""
            t="$t\\nkey_prefix = \"bench-$1:\"\\nconsistency = \"${1#redis-}\""
            [ "$1" = redis-sync ] && t="$t\\nsync_interval = \"1s\"" ;;
    esac
    printf '%s' "$t"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# check_headers URL WHAT: the response is a 200 with the added headers.
check_headers() {
    local head
    head=$(curl -sk -D - -o /dev/null --max-time 5 "$1") || die "$2: $1 did not answer"
    echo "$head" | grep -q '^HTTP/[0-9.]* 200' || die "$2: $1 is not a 200: $head"
    echo "$head" | grep -qi '^x-frame-options: DENY' || die "$2: no X-Frame-Options: $head"
    echo "$head" | grep -qi '^x-content-type-options: nosniff' || die "$2: no X-Content-Type-Options: $head"
}

# check_state BASE ADMIN MODE: the route answers 200, and a Redis mode's
# admin /healthz does not say the backend is degraded.
check_state() {
    local head health
    head=$(curl -s -D - -o /dev/null --max-time 5 "$1/1k") || die "state $3: $1/1k did not answer"
    echo "$head" | grep -q '^HTTP/[0-9.]* 200' || die "state $3: $1/1k is not a 200: $head"
    health=$(curl -s --max-time 5 "$2/healthz") || die "state $3: $2/healthz did not answer"
    if echo "$health" | grep -qi degraded; then die "state $3: the backend is degraded: $health"; fi
}

# backend_metrics ADMIN: the state backend's up gauge and error count, and
# the plugin failures (a hook past its budget answers 500).
backend_metrics() {
    curl -s --max-time 5 "$1/metrics" \
        | grep -E '^tailgate_(state_backend_(up|errors_total)|plugin_failures_total)' \
        | tr '\n' ' ' | sed 's/ $//'
}

# check_ban BASE ADMIN: the ban route answers 200 and the ban list is there
# (the admin API's /bans answers; empty).
check_ban() {
    local head bans
    head=$(curl -s -D - -o /dev/null --max-time 5 "$1/1k") || die "ban: $1/1k did not answer"
    echo "$head" | grep -q '^HTTP/[0-9.]* 200' || die "ban: $1/1k is not a 200: $head"
    bans=$(curl -s --max-time 5 "$2/bans") || die "ban: $2/bans did not answer"
    log "ban route up; bans before the runs: $bans"
}

# measure SCENARIO BODY SIDE ROUND PID URL: one wrk run, one sample line.
# EXTRA_PID (scenario 6: redis-server), when set: its CPU over the run too.
EXTRA_PID=""
measure() {
    local scenario=$1 body=$2 side=$3 round=$4 pid=$5 url=$6 out before after m_before m_after
    local extra=()
    before=$(cpu_ticks "$pid"); m_before=$(machine_ticks)
    [ -n "$EXTRA_PID" ] && extra=("$(cpu_ticks "$EXTRA_PID")")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency "$url")
    after=$(cpu_ticks "$pid"); m_after=$(machine_ticks)
    [ -n "$EXTRA_PID" ] && extra+=("$(cpu_ticks "$EXTRA_PID")")
    echo "$out" >"$RUN/wrk-$scenario-$body-$side-$round.txt"
    python3 "$BENCH/report.py" sample "$RUN/wrk-$scenario-$body-$side-$round.txt" \
        "$scenario" "$body" "$side" "$round" "$before" "$after" "$m_before" "$m_after" \
        "$(getconf CLK_TCK)" "$(peak_rss_kib "$pid")" "${extra[@]+"${extra[@]}"}" >>"$SAMPLES"
    tail -n1 "$SAMPLES" | awk -F'\t' '{printf "bench:   %-12s %-5s %-22s round %s: %8s req/s  p50 %s ms  p99 %s ms  %s us CPU/req%s  (non-2xx %s, errors %s)\n", $1, $2, $3, $4, $5, $6, $7, $8, ($17 != "" ? " + redis " $17 : ""), $11, $12}' >&2
}

# compare SCENARIO A_NAME A_PID A_BASE B_NAME B_PID B_BASE [C_NAME C_PID
# C_BASE ...]: A B (C ...) A B (C ...) per body.
compare() {
    local scenario=$1 body round i
    shift
    local sides=("$@")
    for body in $BODIES; do
        # Warm-up: connections, pools, the cache (scenario 2).
        for ((i = 0; i < ${#sides[@]}; i += 3)); do
            wrk -t1 -c"$CONNECTIONS" -d1s "${sides[i + 2]}/$body" >/dev/null
        done
        for round in $(seq 1 "$ROUNDS"); do
            for ((i = 0; i < ${#sides[@]}; i += 3)); do
                measure "$scenario" "$body" "${sides[i]}" "$round" "${sides[i + 1]}" \
                    "${sides[i + 2]}/$body"
            done
        done
    done
}

# cache_hits LOG: share of access-log lines answered from the cache.
cache_hits() {
    python3 - "$1" <<'PY'
import sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
hits = sum('"upstream_cache_status":"HIT"' in l for l in lines)
print(f"{hits}/{len(lines)}")
PY
}

# other_statuses LOG: the statuses other than 2xx in Tailgate's default
# access-log lines (scenario 6), with their counts, or "none".
other_statuses() {
    python3 - "$1" <<'PY'
import collections, json, sys
seen = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    try:
        status = json.loads(line).get("status")
    except ValueError:
        continue
    if status is not None and not 200 <= int(status) < 300:
        seen[status] += 1
print(", ".join(f"{s} ×{n}" for s, n in sorted(seen.items())) or "none")
PY
}

# Recorded before the runs: HEAD may move while they last (a shared tree).
VERSIONS="tailgate at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- host 2>/dev/null || echo '+uncommitted'), binary built $(date -u -r "$TAILGATE" +%Y-%m-%dT%H:%MZ), $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $( (wrk -v 2>&1 || true) | head -n1 | cut -d' ' -f1-2)"
printf 'scenario\tbody\tside\tround\trps\tp50_ms\tp99_ms\tcpu_us_per_req\tpeak_rss_kib\trequests\tnon2xx\terrors\tuser_us_per_req\tsys_us_per_req\tmachine_us_per_req\tidle_pct\tredis_us_per_req\n' >"$SAMPLES"
start_upstream
# Compile the plugins into the run's cache first (`tailgate check` loads
# them): Cranelift's compile peak (~64 MiB) is not memory under load.
render "$BENCH/tailgate/plugins.toml.in" "$RUN/check.toml" "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""
"$TAILGATE" check "$RUN/check.toml" >/dev/null 2>"$RUN/check-stderr.log" \
    || die "tailgate check failed: $(cat "$RUN/check-stderr.log")"
case " $SCENARIOS " in *" 5 "*)
    render "$BENCH/tailgate/ban.toml.in" "$RUN/check-ban.toml" "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""
    "$TAILGATE" check "$RUN/check-ban.toml" >/dev/null 2>"$RUN/check-stderr.log" \
        || die "tailgate check failed: $(cat "$RUN/check-stderr.log")" ;;
esac
# Scenario 6's three configs (check does not dial Redis: a placeholder port).
case " $SCENARIOS " in *" 6 "*)
    REDIS_PORT=6379
    for mode in local redis-exact redis-sync; do
        render "$BENCH/tailgate/state.toml.in" "$RUN/check-state-$mode.toml" \
            "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" "" "$(state_table "$mode")"
        "$TAILGATE" check "$RUN/check-state-$mode.toml" >/dev/null 2>"$RUN/check-stderr.log" \
            || die "tailgate check ($mode) failed: $(cat "$RUN/check-stderr.log")"
    done ;;
esac
# A build just before the runs leaves the machine busy for a minute or two
# (the 1-minute load average was 1.6 at the start of one such run, and the
# rounds spread by half): wait, up to BENCH_SETTLE_SECONDS (default 150),
# for the 1-minute load average to fall below 0.5.
waited=0
while awk '{ exit !($1 >= 0.5) }' /proc/loadavg && [ "$waited" -lt "${BENCH_SETTLE_SECONDS:-150}" ]; do
    [ "$waited" = 0 ] && log "waiting for the load average to fall below 0.5 (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 5
    waited=$((waited + 5))
done
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
NOTES=()

CACHE_ROUTE='cache = { valid = { 200 = "10m" } }'
NGINX_CACHE='proxy_cache bench; proxy_cache_valid 200 10m;'

for scenario in $SCENARIOS; do
    case "$scenario" in
        1|3)
            name=$([ "$scenario" = 1 ] && echo pass-through || echo tls)
            scheme=$([ "$scenario" = 1 ] && echo http || echo https)
            log "scenario $scenario ($name)"
            start_nginx ""; nginx_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/plugins.toml.in" "tailgate-$name" \
                "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""; tg_pid=$PROXY_PID
            if [ "$scheme" = http ]; then n_port=$NGINX_PORT; t_port=$TG_PORT
            else n_port=$NGINX_TLS_PORT; t_port=$TG_TLS_PORT; fi
            check_headers "$scheme://127.0.0.1:$n_port/1k" nginx
            check_headers "$scheme://127.0.0.1:$t_port/1k" tailgate
            compare "$name" nginx "$nginx_pid" "$scheme://127.0.0.1:$n_port" \
                tailgate "$tg_pid" "$scheme://127.0.0.1:$t_port"
            stop "$nginx_pid"; stop "$tg_pid"
            ;;
        2)
            log "scenario 2 (cache hits)"
            rm -rf "$RUN/nginx-cache"/*
            start_nginx "$NGINX_CACHE"; nginx_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/plugins.toml.in" tailgate-cache \
                "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" "$CACHE_ROUTE"; tg_pid=$PROXY_PID
            check_headers "http://127.0.0.1:$NGINX_PORT/1k" nginx
            check_headers "http://127.0.0.1:$TG_PORT/1k" tailgate
            compare cache nginx "$nginx_pid" "http://127.0.0.1:$NGINX_PORT" \
                tailgate "$tg_pid" "http://127.0.0.1:$TG_PORT"
            stop "$nginx_pid"; stop "$tg_pid"
            NOTES+=("cache hits in the access logs (every request, warm-up included): nginx $(cache_hits "$RUN/logs/nginx-access.log"), tailgate $(cache_hits "$RUN/logs/tailgate-cache-access.log")")
            ;;
        4)
            log "scenario 4 (plugin overhead)"
            start_tailgate "$BENCH/tailgate/no-plugins.toml.in" tailgate-no-plugins \
                "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""; bare_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/plugins.toml.in" tailgate-plugins \
                "$TG2_PORT" "$TG2_TLS_PORT" "$TG2_ADMIN_PORT" ""; tg_pid=$PROXY_PID
            check_headers "http://127.0.0.1:$TG2_PORT/1k" tailgate
            start_nginx ""; nginx_pid=$PROXY_PID
            compare plugins "tailgate-no-plugins" "$bare_pid" "http://127.0.0.1:$TG_PORT" \
                "tailgate" "$tg_pid" "http://127.0.0.1:$TG2_PORT" \
                nginx "$nginx_pid" "http://127.0.0.1:$NGINX_PORT"
            stop "$bare_pid"; stop "$tg_pid"; stop "$nginx_pid"
            ;;
        5)
            log "scenario 5 (ban check)"
            start_tailgate "$BENCH/tailgate/no-plugins.toml.in" tailgate-no-plugins \
                "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""; bare_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/ban.toml.in" tailgate-ban \
                "$TG2_PORT" "$TG2_TLS_PORT" "$TG2_ADMIN_PORT" ""; tg_pid=$PROXY_PID
            check_ban "http://127.0.0.1:$TG2_PORT" "http://127.0.0.1:$TG2_ADMIN_PORT"
            compare ban "tailgate-no-plugins" "$bare_pid" "http://127.0.0.1:$TG_PORT" \
                "tailgate" "$tg_pid" "http://127.0.0.1:$TG2_PORT"
            NOTES+=("scenario 5: bans listed by the ban run's admin API afterwards (none expected): $(curl -s --max-time 5 "http://127.0.0.1:$TG2_ADMIN_PORT/bans" | tr -d '\n')")
            stop "$bare_pid"; stop "$tg_pid"
            ;;
        6)
            log "scenario 6 (state backends: local, redis exact, redis sync 1s; Tailgate only)"
            start_redis
            start_tailgate "$BENCH/tailgate/state.toml.in" tailgate-state-local \
                "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" "" "$(state_table local)"; local_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/state.toml.in" tailgate-state-redis-exact \
                "$TG2_PORT" "$TG2_TLS_PORT" "$TG2_ADMIN_PORT" "" "$(state_table redis-exact)"; exact_pid=$PROXY_PID
            start_tailgate "$BENCH/tailgate/state.toml.in" tailgate-state-redis-sync \
                "$TG3_PORT" "$TG3_TLS_PORT" "$TG3_ADMIN_PORT" "" "$(state_table redis-sync)"; sync_pid=$PROXY_PID
            check_state "http://127.0.0.1:$TG_PORT" "http://127.0.0.1:$TG_ADMIN_PORT" local
            check_state "http://127.0.0.1:$TG2_PORT" "http://127.0.0.1:$TG2_ADMIN_PORT" redis-exact
            check_state "http://127.0.0.1:$TG3_PORT" "http://127.0.0.1:$TG3_ADMIN_PORT" redis-sync
            EXTRA_PID=$REDIS_PID
            compare state local "$local_pid" "http://127.0.0.1:$TG_PORT" \
                redis-exact "$exact_pid" "http://127.0.0.1:$TG2_PORT" \
                redis-sync "$sync_pid" "http://127.0.0.1:$TG3_PORT"
            EXTRA_PID=""
            # The backend stayed up (a run on the local fallback would
            # measure nothing of Redis), and Redis saw the traffic.
            for side in "redis-exact $TG2_ADMIN_PORT" "redis-sync $TG3_ADMIN_PORT"; do
                set -- $side
                NOTES+=("scenario 6, $1 after the runs: $(backend_metrics "http://127.0.0.1:$2"); /healthz: $(curl -s --max-time 5 "http://127.0.0.1:$2/healthz" | tr '\n' ' ' | cut -c1-200); keys under bench-$1: $(redis-cli -p "$REDIS_PORT" --scan --pattern "bench-$1:*" | wc -l)")
            done
            NOTES+=("scenario 6, statuses other than 2xx in the access logs (warm-up included): local $(other_statuses "$RUN/logs/tailgate-state-local-access.log"), redis-exact $(other_statuses "$RUN/logs/tailgate-state-redis-exact-access.log"), redis-sync $(other_statuses "$RUN/logs/tailgate-state-redis-sync-access.log")")
            NOTES+=("scenario 6, Redis commands served (INFO commandstats; warm-up and checks included): $(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {sub("cmdstat_", "", $1); printf "%s%s %s", sep, $1, $3; sep = ", "}')")
            stop "$local_pid"; stop "$exact_pid"; stop "$sync_pid"; stop "$REDIS_PID"
            ;;
        *) die "unknown scenario '$scenario' (1 2 3 4 5 6)" ;;
    esac
    : >"$RUN/logs/nginx-access.log" 2>/dev/null || true
done

# Idle keep-alive connections: what each costs, and whether memory returns.
IDLE="$RUN/idle.tsv"
: >"$IDLE"
if [ "$IDLE_CONNECTIONS" -gt 0 ]; then
    log "idle connections ($IDLE_CONNECTIONS)"
    start_nginx ""; nginx_pid=$PROXY_PID
    start_tailgate "$BENCH/tailgate/plugins.toml.in" tailgate-idle \
        "$TG_PORT" "$TG_TLS_PORT" "$TG_ADMIN_PORT" ""; tg_pid=$PROXY_PID
    for side in nginx tailgate; do
        if [ "$side" = nginx ]; then pid=$nginx_pid; port=$NGINX_PORT; else pid=$tg_pid; port=$TG_PORT; fi
        printf '%s\t%s\n' "$side" \
            "$(python3 "$BENCH/idle_connections.py" "$pid" "$port" 127.0.0.1 /1k "$IDLE_CONNECTIONS" 10)" >>"$IDLE"
        tail -n1 "$IDLE" | awk -F'\t' '{printf "bench:   idle %-8s %s connections: RSS %s KiB -> %s KiB -> %s KiB after; %s B each\n", $1, $2, $3, $4, $5, $6}' >&2
    done
    stop "$nginx_pid"; stop "$tg_pid"
fi

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
MACHINE="$(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"

python3 "$BENCH/report.py" table "$SAMPLES" \
    --machine "$MACHINE" --versions "$VERSIONS" \
    --load "load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER" \
    --settings "wrk -t1 -c$CONNECTIONS, ${DURATION}s per run, $ROUNDS rounds per side, alternating A B A B; 1 worker per proxy" \
    --cores "$(nproc)" --idle "$IDLE" \
    --notes "$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}")" >"$RUN/report.md"
cat "$RUN/report.md"

if [ "$SMOKE" = 0 ]; then
    [ -n "$OUT" ] || OUT="$BENCH/results/$(date -u +%Y-%m-%d-%H%M).md"
    cp "$RUN/report.md" "$OUT"
    log "written: $OUT (samples and wrk outputs in $RUN)"
fi
