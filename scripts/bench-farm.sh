#!/usr/bin/env bash
# Starts `paddock up` in a temporary directory, runs the standard
# `paddock bench` set against it, prints the table and stops the farm.
# Needs root (the runner starts sandboxes). Used by `make bench`.
set -euo pipefail
bin=${1:-bin/paddock}
shift || true
data=$(mktemp -d)
chmod 0711 "$data" # the sandboxes' users must reach the input roots below it
log="$data/up.log"
cleanup() {
  [ -n "${pid:-}" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
"$bin" up --data "$data/farm" --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 1 600); do
  addr=$(sed -n 's/^paddock is up: storage, scheduler and worker on \([^,]*\),.*/\1/p' "$log")
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "paddock up exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "paddock up did not start" >&2; exit 1; }
echo "farm on $addr ($(nproc) cores)"
"$bin" bench standard --endpoint "$addr" "$@"
