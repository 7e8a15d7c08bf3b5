#!/usr/bin/env bash
# Installs what the test suite needs beyond Go, when it is missing: Bazel
# (Debian's bazel-bootstrap), bubblewrap, runc, iproute2, a static busybox (it runs
# inside test images), netty's tcnative (Bazel's TLS), Chromium (the status
# page's browser test), gcc, BuildStream 1.6 (Debian's buildstream) and
# Bazel 2.1.0 (npm's @bazel/bazel-linux_x64, under /opt/paddock-test) and
# SeaweedFS (the S3 tests' object store, built from its Go module by
# scripts/build-seaweedfs.sh into /opt/paddock-test, once per machine). Only
# as root on a machine with apt-get; otherwise it says what is missing and
# the tests that need it skip themselves with a message. `make test` runs
# it first, so the README's test command works on a fresh machine, as CI
# (.ci/run) does.
set -euo pipefail
need=()
command -v bazel >/dev/null || need+=(bazel-bootstrap)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v runc  >/dev/null || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v chromium >/dev/null || need+=(chromium)
command -v ip       >/dev/null || need+=(iproute2)  # the multi-host test's network namespaces
dpkg -s libnetty-tcnative-jni >/dev/null 2>&1 || need+=(libnetty-tcnative-jni)  # Bazel 4.2.3's TLS (internal/bazeltest/tls.go)
command -v gcc      >/dev/null || need+=(gcc)          # paddock run's compile tests
command -v bst      >/dev/null || need+=(buildstream)  # BuildStream 1.6 against the Remote Asset API
command -v npm      >/dev/null || need+=(npm)          # to install Bazel 2.1.0, below
# Bazel 2.1.0, the oldest Bazel the end-to-end tests run (bazeltest.Bazel210).
bazel210=/opt/paddock-test/bazel-2.1.0
install_bazel210() {
  [ -x "$bazel210/node_modules/@bazel/bazel-linux_x64/bazel-2.1.0-linux-x86_64" ] && return 0
  [ "$(id -u)" = 0 ] && command -v npm >/dev/null || return 0
  echo "install-test-deps: installing Bazel 2.1.0 under $bazel210" >&2
  npm install --silent --no-audit --no-fund --prefix "$bazel210" @bazel/bazel-linux_x64@2.1.0 >/dev/null
}
# SeaweedFS's weed, which the S3 storage tests start (storage/storagetest/seaweedtest).
# Built with Go, so not only as root; the tests fail, naming this script, if it is absent.
build_seaweedfs() {
  if [ -w /opt ] || [ -w /opt/paddock-test ] || [ -n "${PADDOCK_TEST_CACHE:-}" ]; then
    "$(dirname "$0")/build-seaweedfs.sh" >/dev/null
  else
    echo "install-test-deps: cannot write /opt/paddock-test: set PADDOCK_TEST_CACHE to build SeaweedFS (the S3 tests fail without it)" >&2
  fi
}
if [ ${#need[@]} -eq 0 ]; then
  install_bazel210
  build_seaweedfs
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing ${need[*]} (not root with apt-get: the tests that need them will skip)" >&2
  build_seaweedfs
  exit 0
fi
echo "install-test-deps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
install_bazel210
build_seaweedfs
