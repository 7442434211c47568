#!/usr/bin/env bash
# Start the Ray head on this laptop and deploy the miner service, both bound to this laptop's address.
#
#   deploy/start-head.sh [--no-data] <this laptop's Tailscale IP> [cpus, default: all]
#
# The node gets the custom resource `head` (one unit per CPU): deploy/config.yaml places that many
# BacktestWorkers here. Ray's token authentication is on (RAY_AUTH_MODE=token); the Ray token lives in
# ~/.ray/auth_token and must be copied to the worker laptop. The miner's API token and admin token are
# created if absent, where deploy/config.yaml's app args say (~/.miner/token, ~/.miner/admin_token, 0600),
# and the dataset this repo ships is linked into its data folder (--no-data: don't).
# Run it again after deploy/stop-head.sh: jobs and results are kept, unfinished jobs resume.
set -euo pipefail
usage="usage: deploy/start-head.sh [--no-data] <this-ip> [cpus]"
NO_DATA=""
if [ "${1:-}" = "--no-data" ]; then
  NO_DATA=1
  shift
fi
IP="${1:?$usage}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# Service managers start scripts with a bare PATH: use the checkout's own virtual environment if it has one.
if [ -x "$HERE/../.venv/bin/ray" ]; then
  export PATH="$HERE/../.venv/bin:$PATH"
fi
CPUS="${2:-$(python3 -c 'import os; print(os.cpu_count())')}"
CONFIG="$HERE/config.yaml"
PORT="$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["http_options"]["port"])' "$CONFIG")"

# A wrong address here is what later reads "we cannot find a local Raylet with the same address": refuse it now.
if ! python3 -c 'import socket, sys; socket.socket().bind((sys.argv[1], 0))' "$IP" 2>/dev/null; then
  echo "error: $IP is not an address of this machine (see 'ip addr', 'ifconfig' or 'tailscale ip -4')" >&2
  exit 2
fi

if [ "$(uname)" = "Darwin" ]; then
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1   # macOS multi-node clusters need this on every node
fi
export RAY_AUTH_MODE=token
ray get-auth-token --generate >/dev/null

python3 -m serve_app.head_setup "$CONFIG" ${NO_DATA:+--no-data}

# Ray's system config (serve_app.config.RAY_SYSTEM_CONFIG) is the head's to set: a joining laptop takes it from here
ray start --head --node-ip-address "$IP" --port 6379 --num-cpus "$CPUS" \
  --resources "{\"head\": $CPUS}" --dashboard-host 127.0.0.1 --disable-usage-stats \
  --system-config "$(python3 -c 'import json; from serve_app.config import RAY_SYSTEM_CONFIG as c; print(json.dumps(c))')"
# Serve first, on this address only: the config's http_options apply only when `serve deploy` starts Serve,
# and Serve's own default host is every interface.
serve start --address auto --http-host "$IP" --http-port "$PORT" --proxy-location HeadOnly
serve deploy "$CONFIG"

# `serve deploy` only submits the config; the service is usable once /healthz answers (workers follow).
for _ in $(seq 1 120); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://$IP:$PORT/healthz" 2>/dev/null; then
    echo
    echo "Miner service: http://$IP:$PORT  (API docs at /docs)"
    echo "Ray token:     ~/.ray/auth_token  (copy it to the worker laptop, then run deploy/join-worker.sh there)"
    exit 0
  fi
  sleep 1
done
echo "error: the service did not answer on http://$IP:$PORT/healthz within 120 s; see 'serve status'" >&2
exit 1
