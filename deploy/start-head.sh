#!/usr/bin/env bash
# Start the Ray head on this laptop and deploy the miner service.
#
#   deploy/start-head.sh <this laptop's Tailscale IP> [cpus, default: all]
#
# The node gets the custom resource `head` (one unit per CPU): deploy/config.yaml places that many
# BacktestWorkers here. Ray's token authentication is on (RAY_AUTH_MODE=token); the Ray token lives in
# ~/.ray/auth_token and must be copied to the worker laptop. The miner API token is written to
# ~/.miner/token: give it to the client laptops (MINER_TOKEN or ~/.miner/config.toml).
set -euo pipefail
IP="${1:?usage: deploy/start-head.sh <tailscale-ip> [cpus]}"
CPUS="${2:-$(python3 -c 'import os; print(os.cpu_count())')}"
HERE="$(cd "$(dirname "$0")" && pwd)"

if [ "$(uname)" = "Darwin" ]; then
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1   # macOS multi-node clusters need this on every node
fi
export RAY_AUTH_MODE=token
ray get-auth-token --generate >/dev/null 2>&1 || true

mkdir -p ~/.miner ~/strategy-miner-data
if [ ! -s ~/.miner/token ]; then
  (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > ~/.miner/token)
fi

ray start --head --node-ip-address "$IP" --port 6379 --num-cpus "$CPUS" \
  --resources "{\"head\": $CPUS}" --dashboard-host 127.0.0.1
serve deploy "$HERE/config.yaml"

echo
echo "Miner service: http://$IP:8000  (API docs at /docs)"
echo "API token:     ~/.miner/token"
echo "Ray token:     ~/.ray/auth_token  (copy it to the worker laptop, then run deploy/join-worker.sh there)"
