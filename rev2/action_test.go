package rev2

import (
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/digest"
)

// A refused timeout is named in the client's own figures: one of 10,000
// years was said to be "2562047h47m16.854775807s" (Go's duration
// saturates), and a malformed one quoted protobuf's text, with its
// non-breaking space.
func TestRefusedTimeoutIsSaidAsGiven(t *testing.T) {
	empty := digest.Empty(repb.DigestFunction_SHA256).Proto()
	for _, c := range []struct {
		timeout *durationpb.Duration
		want    string
	}{
		{&durationpb.Duration{Seconds: 315576000000}, "{seconds: 315576000000, nanos: 0} is above the maximum of 24h0m0s"},
		{&durationpb.Duration{Seconds: -5}, "{seconds: -5, nanos: 0} is negative"},
		{&durationpb.Duration{Seconds: 1, Nanos: 2e9}, "{seconds: 1, nanos: 2000000000} is not a valid duration"},
	} {
		_, _, err := CheckAction(repb.DigestFunction_SHA256, &repb.Action{CommandDigest: empty, InputRootDigest: empty, Timeout: c.timeout}, 24*time.Hour, time.Hour)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "action.timeout") || strings.Contains(err.Error(), "\u00a0") {
			t.Errorf("timeout %v: %v; want INVALID_ARGUMENT naming action.timeout and saying %q", c.timeout, err, c.want)
		}
	}
}
