#!/usr/bin/env bash
# Join this laptop to the miner's Ray cluster as a worker node.
#
#   deploy/join-worker.sh <head's Tailscale IP> <this laptop's Tailscale IP> [label, default air] [cpus]
#
# The node gets the custom resource <label> (one unit per CPU); deploy/config.yaml's
# workers_per_label decides how many BacktestWorkers land here. Needs the package installed
# (pip install -e ".[server]") and the head's Ray token in ~/.ray/auth_token.
set -euo pipefail
HEAD_IP="${1:?usage: deploy/join-worker.sh <head-ip> <this-ip> [label] [cpus]}"
IP="${2:?usage: deploy/join-worker.sh <head-ip> <this-ip> [label] [cpus]}"
LABEL="${3:-air}"
CPUS="${4:-$(python3 -c 'import os; print(os.cpu_count())')}"

if [ "$(uname)" = "Darwin" ]; then
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
fi
export RAY_AUTH_MODE=token
if [ ! -s ~/.ray/auth_token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  echo "error: no Ray token: copy ~/.ray/auth_token from the head laptop first" >&2
  exit 2
fi

ray start --address "$HEAD_IP:6379" --node-ip-address "$IP" --num-cpus "$CPUS" \
  --resources "{\"$LABEL\": $CPUS}"
echo "Joined $HEAD_IP as '$LABEL' with $CPUS CPUs; the pool places workers here within seconds."
