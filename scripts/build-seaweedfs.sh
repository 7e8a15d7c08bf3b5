#!/usr/bin/env bash
# Builds SeaweedFS's `weed`, the real S3-compatible server the S3 storage tests
# start (storage/storagetest/seaweedtest), once per machine: into
# $PADDOCK_TEST_CACHE/seaweedfs-<version>/weed (default /opt/paddock-test),
# outside the clone, and reuses it when present. A plain `go install` of the
# module is refused (its go.mod has replace directives), so the module is
# downloaded through the Go module proxy, copied somewhere writable and built
# there. It takes 10-25 minutes on two busy cores and the binary is ~230 MB.
# The binary is written under a temporary name and renamed into place, so a
# half-built one is never used; a lock keeps two concurrent runs from both
# building. Prints the binary's path on success.
set -euo pipefail
module=github.com/seaweedfs/seaweedfs
version=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
cache=${PADDOCK_TEST_CACHE:-/opt/paddock-test}
dir=$cache/seaweedfs-$version
bin=$dir/weed
go=${GO:-go}

if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi  # another run built it while we waited

echo "build-seaweedfs: building $module@$version into $bin (10-25 minutes)" >&2
work=$(mktemp -d "$dir/build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# `go mod download` needs a module context to resolve nothing else; run it
# from the empty work directory with modules on.
src=$(cd "$work" && GO111MODULE=on GOFLAGS=-mod=mod "$go" mod download -json "$module@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] && [ -d "$src" ] || { echo "build-seaweedfs: go mod download gave no directory" >&2; exit 1; }
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
(cd "$work/src" && GOFLAGS= "$go" build -o "$work/weed" ./weed)
"$work/weed" version >/dev/null
mv "$work/weed" "$bin"  # same file system: an atomic rename
echo "$bin"
