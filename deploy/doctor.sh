#!/usr/bin/env bash
# Check this laptop's part of the miner's cluster, on the head or on a worker laptop: one line per check, each
# failure with its fix; exit 0 when all pass, 3 when one fails.
#
#   deploy/doctor.sh <head's Tailscale IP> [this laptop's Tailscale IP, to check it besides Ray's own here]
#
# Checks the macOS multi-node variable, the Ray token (~/.ray/auth_token), the head's Ray port, that Ray runs here
# under an address of this laptop's own that is also the one it reaches the head from and the one the head sees
# (else "This node has an IP address of 100.118.x, but we cannot find a local Raylet with the same address"), the
# service and the API token as `miner doctor` does, and this laptop's Python, Ray and numba against the head's
# (python -m serve_app.node_doctor). Needs the package installed (pip install -e ".[server]").
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# Service managers start scripts with a bare PATH: use the checkout's own virtual environment if it has one.
if [ -x "$HERE/../.venv/bin/ray" ]; then
  export PATH="$HERE/../.venv/bin:$PATH"
fi
# Unlike the other scripts, no RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER here: whether this shell has it is a check.
exec python3 -m serve_app.node_doctor "$@"
