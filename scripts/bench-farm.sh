#!/usr/bin/env bash
# Starts `paddock up` in a temporary directory, runs a `paddock bench`
# scenario against it (the standard set unless SCENARIO says otherwise;
# further arguments go to paddock bench), prints the table, with the
# machine's and the farm's CPU per operation, and stops the farm.
# Needs root (the runner starts sandboxes). Used by `make bench`.
#
#   scripts/bench-farm.sh [CLIENT_BIN [BENCH FLAGS...]]
#   FARM_BIN=/tmp/paddock-base/bin/paddock SCENARIO=actions scripts/bench-farm.sh bin/paddock -n 500 -c 8
#
# FARM_BIN (default: CLIENT_BIN) is the binary run as `paddock up`, so a new
# client can measure an older farm.
set -euo pipefail
bin=${1:-bin/paddock}
shift || true
farm_bin=${FARM_BIN:-$bin}
. "$(dirname "$0")/farm.sh"
trap stop_farm EXIT
start_farm "$farm_bin"
echo "farm on $farm_addr ($(nproc) cores), pid $farm_pid"
"$bin" bench "${SCENARIO:-standard}" --endpoint "$farm_addr" --farm-pid "$farm_pid" "$@"
