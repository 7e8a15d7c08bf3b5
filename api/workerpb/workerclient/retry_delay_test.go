package workerclient

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRefusedAttemptsAreRetriedSlowly: a refusal (a duplicate worker id,
// a server that is not a scheduler) is retried after the base delay once,
// then ever more slowly up to maxRefusedDelay; a scheduler that is away
// is tried again at the base delay every time.
func TestRefusedAttemptsAreRetriedSlowly(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("register with the scheduler: %w", status.Error(codes.AlreadyExists, "in use")), true},
		{status.Error(codes.Unimplemented, "unknown service"), true},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.Aborted, "session replaced"), false},
		{errors.New("register with the scheduler: answered nothing"), false},
	} {
		if got := isRefusal(c.err); got != c.want {
			t.Errorf("isRefusal(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	base := time.Second
	for refused, want := range []time.Duration{base, base, 2 * base, 4 * base, 8 * base, 10 * base, 10 * base} {
		if got := retryDelay(base, refused); got != want {
			t.Errorf("retryDelay after %d refusals = %s, want %s", refused, got, want)
		}
	}
	if got := retryDelay(base, 1000); got != maxRefusedDelay {
		t.Errorf("retryDelay after 1000 refusals = %s", got)
	}
}
