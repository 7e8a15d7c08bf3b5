# Sourced by the bench scripts: start_farm BIN starts `BIN up` with its data
# in a fresh temporary directory (so every cache starts cold) and sets
# farm_pid, farm_addr and farm_tmp (a 0711 temporary directory the caller
# may use too); stop_farm stops it with Ctrl-C and removes farm_tmp.
start_farm() {
  local bin=$1 log
  farm_tmp=$(mktemp -d)
  chmod 0711 "$farm_tmp" # the sandboxes' users must reach the input roots below it
  log="$farm_tmp/up.log"
  "$bin" up --data "$farm_tmp/farm" --listen 127.0.0.1:0 ${FARM_UP_FLAGS:-} >"$log" 2>&1 &
  farm_pid=$!
  farm_addr=""
  for _ in $(seq 1 600); do
    farm_addr=$(sed -n 's/^paddock is up: storage, scheduler and worker on \([^,]*\),.*/\1/p' "$log")
    [ -n "$farm_addr" ] && break
    kill -0 "$farm_pid" 2>/dev/null || { cat "$log"; echo "paddock up exited" >&2; return 1; }
    sleep 0.1 # polling, bounded by the loop
  done
  [ -n "$farm_addr" ] || { cat "$log"; echo "paddock up did not start" >&2; return 1; }
}

stop_farm() {
  if [ -n "${farm_pid:-}" ]; then
    kill -INT "$farm_pid" 2>/dev/null && wait "$farm_pid" 2>/dev/null || true
  fi
  [ -n "${farm_tmp:-}" ] && rm -rf "$farm_tmp"
  return 0
}
