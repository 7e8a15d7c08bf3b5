#!/usr/bin/env bash
# The Bazel fan-out benchmark. Starts `paddock up` in a temporary directory
# and builds e2e/testdata/fanout (222 small genrules and 7 C compile,
# archive and link actions) with Bazel 4.2.3 against it: WARMUP times
# (default once) to warm the farm and Bazel up (the farm's first sandboxes,
# the host toolchain's files in its CAS, Bazel's JVM), then
# RUNS times (default 3), each after a `bazel clean` and with a fresh salt
# (--action_env=PADDOCK_SALT), so that the farm executes every action every
# time; a run with any cached or local action is an error. For each run it
# prints Bazel's elapsed time, the number of remote actions, and the CPU
# time per action of the whole machine (/proc/stat: Bazel, the farm and
# anything else running) and of the farm (the process tree of paddock up,
# sandboxes included), measured by `paddock bench cpu`, and the time the
# machine's virtual CPUs waited for their hypervisor (steal: a busy host,
# which also slows everything else); then the min,
# median and max of each column over the RUNS runs (the warm-up rows are
# printed, not counted). Needs root and bazel (Debian's
# bazel-bootstrap). Used by `make bench-bazel`.
#
#   scripts/bench-bazel.sh [CLIENT_BIN]
#   FARM_BIN=/tmp/paddock-base/bin/paddock RUNS=5 scripts/bench-bazel.sh bin/paddock
#
# CLIENT_BIN (default bin/paddock) runs `paddock bench cpu`; FARM_BIN
# (default: CLIENT_BIN) is the binary run as `paddock up`, so an older farm
# can be measured with this client. TARGETS (default //...) are the
# targets built: TARGETS=//:all_0 builds the 221 genrules alone (no C
# compile or link), for the farm's CPU per genrule action. BAZEL_ROOT (default: beside the farm's
# data, in the same temporary directory) is Bazel's --output_user_root:
# on a tmpfs, say, Bazel's own file churn (its outputs, `bazel clean`)
# stays off the farm's filesystem, as when Bazel runs on another machine.
# WARMUP (default 1) is how many warm-up builds come before the measured
# runs: Bazel's own JVM warms up over its first few builds, and while it
# does it takes a share of the two cores that slows the farm's processes
# too (see docs/benchmarks.md); WARMUP=4 measures the farm beside a Bazel
# server that has built before, as a developer's usually has.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:-bin/paddock}")
farm_bin=$(realpath "${FARM_BIN:-$bin}")
runs=${RUNS:-3}
warmups=${WARMUP:-1}
command -v bazel >/dev/null || { echo "bazel is not on PATH; install Debian's bazel-bootstrap (Bazel 4.2.3)" >&2; exit 1; }
. "$repo/scripts/farm.sh"

ws=""
startup=()
cleanup() {
  if [ -n "$ws" ]; then
    (cd "$ws" && bazel "${startup[@]}" shutdown) >/dev/null 2>&1 || true
  fi
  stop_farm
}
trap cleanup EXIT
start_farm "$farm_bin"
ws="$farm_tmp/ws"
cp -r "$repo/e2e/testdata/fanout" "$ws"
bazel_root=${BAZEL_ROOT:-$farm_tmp/bazel-root}
read -r -a targets <<<"${TARGETS:-//...}"
startup=(--output_user_root="$bazel_root" --nohome_rc --noworkspace_rc --max_idle_secs=600)
stubs="$repo/e2e/testdata/stubs"
flags=(
  --color=no --curses=no --noshow_progress
  --remote_executor="grpc://$farm_addr" --spawn_strategy=remote --noremote_local_fallback
  --incompatible_strict_action_env
  --override_repository=rules_cc="$stubs/rules_cc"
  --override_repository=rules_java="$stubs/rules_java"
  --override_repository=remote_coverage_tools="$stubs/remote_coverage_tools"
)
echo "farm $farm_bin on $farm_addr, pid $farm_pid; $(nproc) cores; workspace $ws; targets ${targets[*]}"

# Start the Bazel server and configure the host toolchain outside the
# measurement.
(cd "$ws" && bazel "${startup[@]}" build "${flags[@]}" --nobuild //...) >"$farm_tmp/warmup.log" 2>&1 ||
  { cat "$farm_tmp/warmup.log"; exit 1; }

rows="$farm_tmp/rows"
: >"$rows"
printf '%-7s %9s %7s %7s   %-27s   %-27s   %s\n' "" "" "" "" "machine CPU ms/action" "farm CPU ms/action" "steal"
printf '%-7s %9s %7s %7s   %8s %8s %9s   %8s %8s %9s   %8s\n' run "elapsed s" "wall s" actions user system total user system total ms/action
for i in $(seq $((1 - warmups)) "$runs"); do
  (cd "$ws" && bazel "${startup[@]}" clean) >"$farm_tmp/clean.log" 2>&1 || { cat "$farm_tmp/clean.log"; exit 1; }
  salt=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  log="$farm_tmp/run$i.log"
  (cd "$ws" && "$bin" bench cpu --farm-pid "$farm_pid" -- \
    bazel "${startup[@]}" build "${flags[@]}" --action_env=PADDOCK_SALT="$salt" "${targets[@]}") >"$log" 2>&1 ||
    { cat "$log"; echo "run $i: the build failed" >&2; exit 1; }
  # "INFO: 234 processes: 5 internal, 229 remote."
  procs=$(grep -E '^INFO: [0-9]+ process(es)?: ' "$log" || true)
  kinds=$(echo "$procs" | sed -E 's/^INFO: [0-9]+ process(es)?: //; s/\.$//; s/[0-9]+ //g; s/, /\n/g' | grep -vxE 'internal|remote' || true)
  if [ -z "$procs" ] || [ -n "$kinds" ]; then
    cat "$log"
    echo "run $i: not every action was executed remotely: ${procs:-no process summary}" >&2
    exit 1
  fi
  actions=$(echo "$procs" | grep -oE '[0-9]+ remote[,.]' | grep -oE '^[0-9]+')
  elapsed=$(sed -nE 's/^INFO: Elapsed time: ([0-9.]+)s.*/\1/p' "$log")
  cpu=$(grep '^cpu: ' "$log")
  field() { local v=${cpu##* $1=}; echo "${v%% *}"; }
  label=$i
  [ "$i" -le 0 ] && label=warm-up
  echo "$label $elapsed $(field wall_s) $actions $(field machine_user_ms) $(field machine_sys_ms) $(field farm_user_ms) $(field farm_sys_ms) $(field machine_steal_ms)" |
    awk '{ n = $4; printf "%-7s %9.2f %7.2f %7d   %8.1f %8.1f %9.1f   %8.1f %8.1f %9.1f   %8.1f\n",
      $1, $2, $3, n, $5/n, $6/n, ($5+$6)/n, $7/n, $8/n, ($7+$8)/n, $9/n }' >"$farm_tmp/row"
  cat "$farm_tmp/row"
  [ "$i" -le 0 ] || cat "$farm_tmp/row" >>"$rows"
done

# The farm's CPU per action by process in the last run (paddock bench
# cpu's cpu-process lines): where the farm's time goes.
echo
echo "farm CPU ms/action by process, last run:"
grep '^cpu-process: ' "$log" | sed -E 's/^cpu-process: user_ms=([0-9]+) sys_ms=([0-9]+) name=(.*)$/\1 \2 \3/' |
  awk -v n="$actions" '($1+$2)/n >= 0.05 { printf "  %-45s %8.1f %8.1f %9.1f\n", substr($0, index($0, $3)), $1/n, $2/n, ($1+$2)/n }'
echo

# min, median (the lower one for an even count) and max of each column
# over the runs, each column on its own.
for stat in min median max; do
  for col in $(seq 2 11); do
    v=$(awk -v c="$col" '{ print $c }' "$rows" | sort -g)
    n=$(echo "$v" | wc -l)
    case $stat in
    min) echo "$v" | head -1 ;;
    median) echo "$v" | sed -n "$(((n + 1) / 2))p" ;;
    max) echo "$v" | tail -1 ;;
    esac
  done | paste -sd' ' | awk -v s="$stat" '{ printf "%-7s %9s %7s %7s   %8s %8s %9s   %8s %8s %9s   %8s\n", s, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
done
