#!/usr/bin/env bash
# Join this laptop to the miner's Ray cluster as a worker node.
#
#   deploy/join-worker.sh [--daemon] <head's Tailscale IP> <this laptop's Tailscale IP> [label, default air] [cpus]
#
# The node gets the custom resource <label> (one unit per CPU); deploy/config.yaml's
# workers_per_label decides how many BacktestWorkers land here. Needs the package installed
# (pip install -e ".[server]") and the head's Ray token in ~/.ray/auth_token.
#
# --daemon: stay in the foreground and keep the laptop in the cluster: rejoin by itself within seconds of the
# head being reachable again after sleep, network loss or a head restart (python -m serve_app.worker_daemon).
# Status word in ~/.miner/worker.status, log in ~/.miner/worker.log; SIGTERM leaves the cluster and exits 0.
# deploy/systemd/ and deploy/launchd/ run it as a service.
set -euo pipefail
usage="usage: deploy/join-worker.sh [--daemon] <head-ip> <this-ip> [label] [cpus]"
DAEMON=""
if [ "${1:-}" = "--daemon" ]; then
  DAEMON=1
  shift
fi
HEAD_IP="${1:?$usage}"
IP="${2:?$usage}"
LABEL="${3:-air}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# Service managers start scripts with a bare PATH: use the checkout's own virtual environment if it has one.
if [ -x "$HERE/../.venv/bin/ray" ]; then
  export PATH="$HERE/../.venv/bin:$PATH"
fi
CPUS="${4:-$(python3 -c 'import os; print(os.cpu_count())')}"

if [ "$(uname)" = "Darwin" ]; then
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
fi
export RAY_AUTH_MODE=token
if [ ! -s ~/.ray/auth_token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  echo "error: no Ray token: copy ~/.ray/auth_token from the head laptop first" >&2
  exit 2
fi
# A wrong address here is what later reads "we cannot find a local Raylet with the same address": refuse it now.
if ! python3 -c 'import socket, sys; socket.socket().bind((sys.argv[1], 0))' "$IP" 2>/dev/null; then
  echo "error: $IP is not an address of this machine (see 'ip addr', 'ifconfig' or 'tailscale ip -4')" >&2
  exit 2
fi

if [ -n "$DAEMON" ]; then
  exec python3 -m serve_app.worker_daemon --join-script "$HERE/join-worker.sh" "$HEAD_IP" "$IP" "$LABEL" "$CPUS"
fi

ray start --address "$HEAD_IP:6379" --node-ip-address "$IP" --num-cpus "$CPUS" \
  --resources "{\"$LABEL\": $CPUS}" --disable-usage-stats
echo "Joined $HEAD_IP as '$LABEL' with $CPUS CPUs; the pool places workers here within seconds."
