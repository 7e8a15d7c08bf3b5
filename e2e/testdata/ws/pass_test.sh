#!/bin/sh
# Passes when the genrule chain produced what it should.
set -e
test "$(cat report.txt)" = "HELLO FROM PADDOCK
hello, paddock"
echo "pass_test ok"
