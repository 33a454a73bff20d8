#!/usr/bin/env bash
# Tailgate's container entrypoint on Fly.io: joins the tailnet, then runs the
# proxy. Two daemons: tailscaled (the tailnet) and tailgate (the proxy).
#
# Order of events:
#   1. Fail fast, before touching the tailnet: TS_AUTHKEY must be set, the
#      settings must be valid, and the config must pass `tailgate check` (so a
#      bad deploy leaves no node behind).
#   2. Start tailscaled: a TUN device by default; TS_USERSPACE=true selects
#      userspace networking with a SOCKS5 proxy instead.
#   3. `tailscale up` with the auth key (handed over in a file, never on a
#      command line), a hostname unique per machine, and a timeout.
#   4. Wait until the backend state is `Running`, TS_UP_TIMEOUT seconds at most.
#   5. Run tailgate (as TAILGATE_USER when set). SIGTERM and SIGINT sent to
#      this script are passed on to tailgate as SIGTERM at once, so tailgate
#      gets Fly's kill_signal directly and drains while the tailnet is still up.
#   6. When tailgate exits: `tailscale logout` (an ephemeral node leaves the
#      tailnet at once instead of piling up), stop tailscaled, and exit with
#      tailgate's status. If tailscaled dies first, tailgate is stopped and the
#      script exits 1 so Fly restarts the machine.
#
# Why not `exec tailgate`: nothing would be left to log the node out. This
# script stays as a thin parent whose only job after start-up is forwarding
# signals and cleaning up; it holds no sockets and adds no latency.
#
# Settings (environment variables; docs/deploy-fly.md has the full story):
#   TS_AUTHKEY          required; a tailnet auth key (reusable, ephemeral, tagged)
#   TS_HOSTNAME         node name; default <FLY_APP_NAME>-<FLY_REGION>-<FLY_MACHINE_ID>
#   TS_TAGS             optional; passed as --advertise-tags (e.g. tag:flyio-proxy)
#   TS_USERSPACE        false (TUN, default) or true (userspace networking + SOCKS5)
#   TS_SOCKS5_SERVER    SOCKS5 listen address in userspace mode; default 127.0.0.1:1055
#   TS_UP_TIMEOUT       seconds to reach Running; default 60
#   TS_LOGOUT_TIMEOUT   seconds `tailscale logout` may take on exit; default 10
#   TS_EXTRA_ARGS       extra arguments for `tailscale up`, split on spaces
#   TS_SOCKET           tailscaled's local API socket; default /var/run/tailscale/tailscaled.sock
#   TS_STATE_DIR        tailscaled's state directory; default /var/lib/tailscale
#   TAILGATE_CONFIG     the config file; default /etc/tailgate/config.toml
#   TAILGATE_USER       run tailgate as this user (via setpriv); empty = as is
set -euo pipefail

# How long tailscaled gets to exit after SIGTERM before SIGKILL, seconds.
readonly TAILSCALED_STOP_TIMEOUT=5

log() { printf 'start.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- settings ---------------------------------------------------------------

TS_USERSPACE=${TS_USERSPACE:-false}
TS_SOCKS5_SERVER=${TS_SOCKS5_SERVER:-127.0.0.1:1055}
TS_UP_TIMEOUT=${TS_UP_TIMEOUT:-60}
TS_LOGOUT_TIMEOUT=${TS_LOGOUT_TIMEOUT:-10}
TS_TAGS=${TS_TAGS:-}
TS_EXTRA_ARGS=${TS_EXTRA_ARGS:-}
TS_SOCKET=${TS_SOCKET:-/var/run/tailscale/tailscaled.sock}
TS_STATE_DIR=${TS_STATE_DIR:-/var/lib/tailscale}
TAILGATE_CONFIG=${TAILGATE_CONFIG:-/etc/tailgate/config.toml}
TAILGATE_USER=${TAILGATE_USER:-}

if [[ -z ${TS_AUTHKEY:-} ]]; then
  die "TS_AUTHKEY is not set. Create a reusable, ephemeral auth key tagged tag:flyio-proxy in the Tailscale admin console (Settings > Keys), then run: fly secrets set TS_AUTHKEY=tskey-auth-..."
fi

case $TS_USERSPACE in
  true | 1 | yes) userspace=1 ;;
  false | 0 | no | "") userspace=0 ;;
  *) die "TS_USERSPACE must be true or false, not \"$TS_USERSPACE\"" ;;
esac

for setting in TS_UP_TIMEOUT TS_LOGOUT_TIMEOUT; do
  if [[ ! ${!setting} =~ ^[1-9][0-9]{0,4}$ ]]; then
    die "$setting must be a whole number of seconds (1-99999), not \"${!setting}\""
  fi
done

# A DNS label: lower case letters, digits and '-', at most 63 characters.
sanitize_hostname() {
  local name=${1,,}
  name=${name//[^a-z0-9-]/-}
  while [[ $name == *--* ]]; do name=${name//--/-}; done
  name=${name#-}
  name=${name:0:63}
  name=${name%-}
  printf '%s' "${name:-tailgate}"
}
ts_hostname=$(sanitize_hostname "${TS_HOSTNAME:-${FLY_APP_NAME:-tailgate}-${FLY_REGION:-local}-${FLY_MACHINE_ID:-${HOSTNAME:-node}}}")

# Extra `tailscale up` arguments, split on whitespace (no quoting).
read -r -a ts_extra_args <<<"$TS_EXTRA_ARGS"

# Commands run as the proxy's user: tailgate itself and its config check.
as_tailgate_user=()
if [[ -n $TAILGATE_USER ]]; then
  as_tailgate_user=(setpriv "--reuid=$TAILGATE_USER" "--regid=$TAILGATE_USER" --init-groups --no-new-privs --)
fi

# --- state and clean-up -------------------------------------------------------

tailscaled_pid=""
up_pid=""
tailgate_pid=""
joined=0
authkey_file=""
up_output=""

ts() { tailscale "--socket=$TS_SOCKET" "$@"; }

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# Milliseconds since the epoch ($SECONDS only counts whole seconds).
now_ms() {
  local us=${EPOCHREALTIME/[.,]/}
  printf '%s' $((us / 1000))
}

# Waits up to $2 seconds for process $1 to exit; true if it did.
# shellcheck disable=SC2317 # called from cleanup, which runs from the EXIT trap
wait_gone() {
  local pid=$1 tenths=$(($2 * 10))
  while alive "$pid" && ((tenths > 0)); do
    sleep 0.1
    tenths=$((tenths - 1))
  done
  ! alive "$pid"
}

# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
  local status=$?
  # A second kill_signal during clean-up must not cut the logout short.
  trap 'log "clean-up in progress; signal ignored"' TERM INT
  if alive "$up_pid"; then
    kill -TERM "$up_pid" 2>/dev/null || true
  fi
  if alive "$tailgate_pid"; then
    log "stopping tailgate (pid $tailgate_pid)"
    kill -TERM "$tailgate_pid" 2>/dev/null || true
    wait_gone "$tailgate_pid" 10 || kill -KILL "$tailgate_pid" 2>/dev/null || true
  fi
  if ((joined)); then
    if alive "$tailscaled_pid"; then
      log "logging out of the tailnet (node $ts_hostname)"
      if ! timeout "$TS_LOGOUT_TIMEOUT" tailscale "--socket=$TS_SOCKET" logout; then
        log "warning: tailscale logout failed or took over ${TS_LOGOUT_TIMEOUT}s; the node stays listed until the control plane expires it"
      fi
    else
      log "skipping tailscale logout: tailscaled is not running (an ephemeral node is removed once it has been offline for a while)"
    fi
  fi
  if alive "$tailscaled_pid"; then
    log "stopping tailscaled (pid $tailscaled_pid)"
    kill -TERM "$tailscaled_pid" 2>/dev/null || true
    if ! wait_gone "$tailscaled_pid" "$TAILSCALED_STOP_TIMEOUT"; then
      log "tailscaled did not exit within ${TAILSCALED_STOP_TIMEOUT}s; killing it"
      kill -KILL "$tailscaled_pid" 2>/dev/null || true
    fi
  fi
  rm -f -- "$authkey_file" "$up_output"
  log "exiting with status $status"
  exit "$status"
}
trap cleanup EXIT

# shellcheck disable=SC2317 # runs from the TERM and INT traps
on_signal() {
  local name=$1 code=$2
  if [[ -n $tailgate_pid ]]; then
    log "received SIG$name; forwarding SIGTERM to tailgate (pid $tailgate_pid)"
    kill -TERM "$tailgate_pid" 2>/dev/null || true
  else
    log "received SIG$name during start-up; aborting"
    exit "$code"
  fi
}
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT

# --- 1. check the config before joining the tailnet --------------------------

log "checking $TAILGATE_CONFIG"
if ! "${as_tailgate_user[@]}" tailgate check "$TAILGATE_CONFIG"; then
  die "$TAILGATE_CONFIG failed 'tailgate check' (see above); not joining the tailnet"
fi

# The auth key goes to `tailscale up` in a file readable by root only, and is
# removed from the environment so that tailgate never sees it.
mkdir -p -- "$TS_STATE_DIR" "$(dirname -- "$TS_SOCKET")"
authkey_file=$(mktemp "$TS_STATE_DIR/authkey.XXXXXX")
chmod 600 "$authkey_file"
printf '%s' "$TS_AUTHKEY" >"$authkey_file"
unset TS_AUTHKEY
up_output=$(mktemp "$TS_STATE_DIR/up-output.XXXXXX")

deadline=$(($(now_ms) + TS_UP_TIMEOUT * 1000))

# --- 2. tailscaled -------------------------------------------------------------

# --state=mem: keeps no state on disk and registers the node as ephemeral.
tailscaled_args=(--state=mem: "--statedir=$TS_STATE_DIR" "--socket=$TS_SOCKET")
if ((userspace)); then
  tailscaled_args+=(--tun=userspace-networking "--socks5-server=$TS_SOCKS5_SERVER")
  log "starting tailscaled (userspace networking, SOCKS5 on $TS_SOCKS5_SERVER)"
else
  log "starting tailscaled (TUN)"
fi
tailscaled "${tailscaled_args[@]}" &
tailscaled_pid=$!

# The local API answers once `status` reports a backend state.
backend_state() {
  ts status --json 2>/dev/null | sed -n 's/.*"BackendState": *"\([A-Za-z]*\)".*/\1/p' | head -n 1
}

state=""
until state=$(backend_state) && [[ -n $state ]]; do
  if ! alive "$tailscaled_pid"; then
    status=0
    wait "$tailscaled_pid" || status=$?
    tailscaled_pid=""
    hint="in TUN mode it needs /dev/net/tun and root; set TS_USERSPACE=true to run without a TUN device"
    ((userspace)) && hint="see its messages above"
    die "tailscaled exited with status $status before it was ready ($hint)"
  fi
  if (($(now_ms) >= deadline)); then
    die "tailscaled did not answer on $TS_SOCKET within ${TS_UP_TIMEOUT}s"
  fi
  sleep 0.2
done

# --- 3. tailscale up -----------------------------------------------------------

remaining=$(((deadline - $(now_ms) + 999) / 1000))
((remaining > 0)) || remaining=1
up_args=(up "--auth-key=file:$authkey_file" "--hostname=$ts_hostname" "--timeout=${remaining}s")
[[ -n $TS_TAGS ]] && up_args+=("--advertise-tags=$TS_TAGS")
up_args+=("${ts_extra_args[@]}")
log "joining the tailnet as $ts_hostname (timeout ${TS_UP_TIMEOUT}s)"
joined=1
tailscale "--socket=$TS_SOCKET" "${up_args[@]}" >"$up_output" 2>&1 &
up_pid=$!

# --- 4. wait for Running ---------------------------------------------------------

up_done=0
while :; do
  state=$(backend_state) || state=""
  [[ $state == Running ]] && break
  if ((!up_done)) && ! alive "$up_pid"; then
    status=0
    wait "$up_pid" || status=$?
    up_pid=""
    up_done=1
    if ((status != 0)); then
      sed 's/^/tailscale up: /' "$up_output" >&2
      reason=$(grep -v '^[[:space:]]*$' "$up_output" | tail -n 1) || true
      die "tailscale up failed with status $status: ${reason:-no output}. Check the TS_AUTHKEY secret (a valid, unexpired, reusable key) and that TS_TAGS matches the key's tags"
    fi
  fi
  if (($(now_ms) >= deadline)); then
    die "tailscale did not reach Running within ${TS_UP_TIMEOUT}s (backend state: ${state:-unknown}). NeedsMachineAuth means the device must be approved in the admin console; Starting usually means the control plane or DERP is unreachable"
  fi
  sleep 0.2
done
if alive "$up_pid"; then
  kill -TERM "$up_pid" 2>/dev/null || true
fi
sed 's/^/tailscale up: /' "$up_output" >&2
rm -f -- "$authkey_file"
log "tailnet is up (backend state Running)"

# --- 5. tailgate -----------------------------------------------------------------

log "starting tailgate run --config $TAILGATE_CONFIG${TAILGATE_USER:+ as $TAILGATE_USER}"
"${as_tailgate_user[@]}" tailgate run --config "$TAILGATE_CONFIG" &
tailgate_pid=$!

# Waits for tailgate, across trapped signals; stops it if tailscaled dies.
tailgate_status=1
tailscaled_died=0
while :; do
  pids=("$tailgate_pid")
  [[ -n $tailscaled_pid ]] && pids+=("$tailscaled_pid")
  exited=""
  status=0
  wait -n -p exited "${pids[@]}" || status=$?
  if [[ -z ${exited:-} ]]; then
    # A trapped signal interrupted the wait (on_signal has forwarded it; the
    # next `wait -n` also reports a child that exited meanwhile), or there is
    # nothing left to wait for.
    if ((status == 127)); then
      log "lost track of tailgate (pid $tailgate_pid)"
      tailgate_pid=""
      break
    fi
    continue
  fi
  if [[ $exited == "$tailgate_pid" ]]; then
    tailgate_pid=""
    tailgate_status=$status
    log "tailgate exited with status $status"
    break
  fi
  log "error: tailscaled exited with status $status while tailgate was running; the tailnet is gone, stopping tailgate"
  tailscaled_pid=""
  tailscaled_died=1
  kill -TERM "$tailgate_pid" 2>/dev/null || true
done

# --- 6. logout and exit (in cleanup) ---------------------------------------------

if ((tailscaled_died)); then
  exit 1
fi
exit "$tailgate_status"
