#!/usr/bin/env bash
# Stop the miner service and Ray on the head laptop, cleanly: nothing is lost, and
# deploy/start-head.sh brings it all back (finished jobs and results kept, unfinished jobs resume).
#
#   deploy/stop-head.sh
#
# The coordinator stops first, then the Serve app (python -m serve_app.stop says why), then every
# Ray process on this laptop (`ray stop`: SIGTERM, and SIGKILL after a grace period).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# Service managers start scripts with a bare PATH: use the checkout's own virtual environment if it has one.
if [ -x "$HERE/../.venv/bin/ray" ]; then
  export PATH="$HERE/../.venv/bin:$PATH"
fi
if [ "$(uname)" = "Darwin" ]; then
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
fi
export RAY_AUTH_MODE=token

python3 -m serve_app.stop
ray stop --grace-period 10 --log-style pretty --log-color false  # pretty: without it every process is listed
