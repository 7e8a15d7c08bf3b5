package main

import (
	"strings"
	"testing"
)

// TestUpBannerMatchesTheListener: the Bazel flags up prints use grpcs://
// and the CA when the listener serves TLS, and a bearer token header when
// a policy is loaded (a grpc:// line pointed operators at plaintext).
func TestUpBannerMatchesTheListener(t *testing.T) {
	for _, c := range []struct {
		tls, policy bool
		want, not   []string
	}{
		{false, false, []string{"--remote_executor=grpc://127.0.0.1:1 "}, []string{"grpcs", "tls_certificate", "remote_header"}},
		{true, true, []string{"--remote_executor=grpcs://127.0.0.1:1 ", "--remote_cache=grpcs://127.0.0.1:1 ", "--tls_certificate=", `--remote_header=authorization="Bearer $TOKEN"`}, []string{"grpc://"}},
	} {
		var b strings.Builder
		printUpBanner(&b, "127.0.0.1:1", "/data", "", c.tls, c.policy)
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("tls %v policy %v: banner lacks %q:\n%s", c.tls, c.policy, w, b.String())
			}
		}
		for _, n := range c.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("tls %v policy %v: banner has %q:\n%s", c.tls, c.policy, n, b.String())
			}
		}
	}
}
