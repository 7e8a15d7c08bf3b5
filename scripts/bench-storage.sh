#!/usr/bin/env bash
# Runs `paddock bench cas` against `paddock storage` with its blobs on local
# disk, in S3 (a SeaweedFS server started here on loopback, built by
# scripts/build-seaweedfs.sh), and in S3 behind a local disk cache
# (BACKENDS: disk, s3, cached), for each SIZE:N pair: N blobs of SIZE bytes
# up and down with ByteStream, then FindMissingBlobs of 10,000 digests (20
# calls). Prints each table with the storage process's CPU per operation.
# Figures go in docs/benchmarks.md.
#
#   scripts/bench-storage.sh [BIN]
#   SIZES="1MiB:200 64MiB:4" CONC=8 BACKENDS="disk s3 cached" scripts/bench-storage.sh bin/paddock
set -euo pipefail
bin=${1:-bin/paddock}
sizes=${SIZES:-1MiB:200 64MiB:4}
conc=${CONC:-8}
backends=${BACKENDS:-disk s3 cached}
weed=$("$(dirname "$0")/build-seaweedfs.sh")
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Eleven consecutive free loopback ports from a random base.
while :; do
  base=$((20000 + RANDOM % 30000))
  busy=$(ss -Htln "sport >= :$base and sport <= :$((base + 10))" | wc -l)
  [ "$busy" = 0 ] && break
done
s3=127.0.0.1:$((base + 6))
ak=bench sk=bench-secret-key
echo "$sk" >"$tmp/secret"
cat >"$tmp/s3.json" <<EOF
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$ak", "secretKey": "$sk"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
mkdir "$tmp/weed"
"$weed" -logtostderr server -dir="$tmp/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port=$base -master.port.grpc=$((base + 1)) -volume.port=$((base + 2)) -volume.port.grpc=$((base + 3)) \
  -filer -filer.port=$((base + 4)) -filer.port.grpc=$((base + 5)) -filer.localSocket="$tmp/filer.sock" \
  -s3 -s3.port=$((base + 6)) -s3.port.grpc=$((base + 7)) -s3.localSocket="$tmp/s3.sock" -s3.config="$tmp/s3.json" \
  -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false -master.volumeSizeLimitMB=1024 -volume.max=0 \
  >"$tmp/weed.log" 2>&1 &
pids+=($!)
# The bucket, once the gateway and its filer answer (polling, bounded).
for i in $(seq 1 600); do
  curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ak:$sk" -X PUT "http://$s3/bench" >/dev/null && break
  [ "$i" = 600 ] && { tail -50 "$tmp/weed.log"; echo "SeaweedFS did not come up" >&2; exit 1; }
  sleep 0.2
done

# start_storage NAME PORT BACKEND_YAML: `paddock storage` on 127.0.0.1:PORT.
start_storage() {
  local name=$1 port=$2
  printf 'listen: 127.0.0.1:%s\ndir: %s\n%s\n' "$port" "$tmp/$name" "$3" >"$tmp/$name.yaml"
  "$bin" storage --config "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 &
  storage_pid=$!
  pids+=($storage_pid)
  for i in $(seq 1 600); do
    grep -q "paddock storage listening on" "$tmp/$name.log" && return 0
    kill -0 "$storage_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/$name.log"
  echo "paddock storage ($name) did not start" >&2
  exit 1
}

for backend in $backends; do
  case $backend in
  disk) start_storage disk $((base + 8)) "max_bytes: 50GiB" ;;
  s3) start_storage s3 $((base + 9)) "backend: {s3: {endpoint: \"$s3\", bucket: bench, prefix: cas,
  access_key_id: $ak, secret_access_key_file: $tmp/secret}}" ;;
  cached) start_storage cached $((base + 10)) "backend: {cached: {dir: $tmp/cache, max_bytes: 20GiB, backend: {s3: {
  endpoint: \"$s3\", bucket: bench, prefix: cached, access_key_id: $ak, secret_access_key_file: $tmp/secret}}}}" ;;
  esac
  addr=$(sed -n 's/^paddock storage listening on //p' "$tmp/$backend.log")
  for pair in $sizes; do
    echo "== $backend: ${pair#*:} blobs of ${pair%%:*}, concurrency $conc ($(nproc) cores)"
    echo "\$ paddock bench cas --endpoint $addr -n ${pair#*:} --size ${pair%%:*} -c $conc --farm-pid $storage_pid"
    "$bin" bench cas --endpoint "$addr" -n "${pair#*:}" --size "${pair%%:*}" -c "$conc" --farm-pid "$storage_pid"
  done
done
