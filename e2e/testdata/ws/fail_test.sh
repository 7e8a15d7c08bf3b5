#!/bin/sh
# Fails, printing something new on every run, so that its log tells an
# execution from a cached result.
echo "fail_test runs and fails: run $(cat /proc/sys/kernel/random/uuid)"
exit 1
