#!/usr/bin/env bash
# One genrule's command, three ways, CPU per run: bare (a shell's child),
# in bubblewrap (read-only /usr and /etc, the same namespaces as the native
# sandbox), and through Paddock's runner (runner service, spawner, init
# with the host view: BenchmarkRunGenrule in package runner). Every figure
# is `perf stat -e task-clock` over the whole process tree, divided by the
# runs, so nothing escapes the count whoever reaps it. The rounds alternate
# the three, as the machine's load comes and goes. Needs root, perf
# (Debian's linux-perf) and bwrap.
#
#   scripts/bench-genrule.sh [ROUNDS] [RUNS]      # default 5 rounds of 300
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
runs=${2:-300}
for t in perf bwrap; do command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "alpha bravo charlie delta echo foxtrot" >in.txt
# The command of a leaf of e2e/testdata/fanout (runner.genruleScript).
script='echo "leaf 7 $({ cat in.txt; echo 7; } | tr a-z A-Z | sha256sum | cut -c1-16) $(wc -w < in.txt)" > out.txt'
printf 'for i in $(seq %d); do /bin/bash -c %q; done\n' "$runs" "$script" >bare.sh
binds=()
for d in /usr /etc /bin /lib /lib64 /sbin; do
  if [ -L "$d" ]; then binds+=(--symlink "$(readlink "$d")" "$d"); elif [ -d "$d" ]; then binds+=(--ro-bind "$d" "$d"); fi
done
printf 'for i in $(seq %d); do bwrap --unshare-user --uid 0 --gid 0 --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup %s --proc /proc --dev /dev --tmpfs /tmp --bind %q /work --chdir /work --die-with-parent /bin/bash -c %q; done\n' \
  "$runs" "${binds[*]}" "$tmp" "$script" >bwrap.sh
(cd "$repo" && go test -c -o "$tmp/runner.test" ./runner)
cpu_ms() { perf stat -e task-clock -x, -o "$tmp/stat" "$@" >/dev/null 2>&1; cut -d, -f1 "$tmp/stat" | grep -E '^[0-9.]+$' | tail -1; }
printf '%-6s %10s %10s %10s   (CPU ms per run, %d runs a round)\n' round bare bwrap native "$runs"
for r in $(seq "$rounds"); do
  bare=$(cpu_ms bash bare.sh)
  bw=$(cpu_ms bash bwrap.sh)
  # The benchmark with 1 iteration (set-up, a warm-up run and one run)
  # is subtracted from the one with runs+1.
  n1=$(cd "$repo/runner" && cpu_ms "$tmp/runner.test" -test.run '^$' -test.bench 'RunGenrule$' -test.benchtime 1x)
  n=$(cd "$repo/runner" && cpu_ms "$tmp/runner.test" -test.run '^$' -test.bench 'RunGenrule$' -test.benchtime "$((runs + 1))x")
  awk -v r="$r" -v b="$bare" -v w="$bw" -v n="$n" -v n1="$n1" -v k="$runs" \
    'BEGIN { printf "%-6s %10.2f %10.2f %10.2f\n", r, b/k, w/k, (n-n1)/k }'
done
