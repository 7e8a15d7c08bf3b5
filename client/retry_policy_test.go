package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The pauses double from FirstPause up to MaxPause, each moved by at
// most retryJitter of itself either way.
func TestRetryPauses(t *testing.T) {
	p := DefaultRetryPolicy()
	ms := time.Millisecond
	for _, tc := range []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0.5, 250 * ms},
		{1, 0.5, 500 * ms},
		{5, 0.5, 8 * time.Second},
		{6, 0.5, 10 * time.Second},
		{1000, 0.5, 10 * time.Second},
		{0, 0, 200 * ms},
		{0, 1, 300 * ms},
		{1000, 0, 8 * time.Second},
	} {
		if got := p.pause(tc.n, tc.r); got != tc.want {
			t.Errorf("pause(%d, %v) = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
	var total time.Duration
	for n := range DefaultRetries {
		total += p.pause(n, 0.5)
	}
	if total != 75750*ms {
		t.Errorf("the default budget waits %v in all, want 75.75 s (as Execute always has)", total)
	}
	if q := (RetryPolicy{FirstPause: time.Second, MaxPause: ms}).withDefaults(); q.pause(3, 0.5) != time.Second {
		t.Errorf("a MaxPause under FirstPause: pause %v, want FirstPause", q.pause(3, 0.5))
	}
}

// Only failures for a passing reason are tried again: not a refusal of
// the request, not a cache miss, not the caller's own deadline.
func TestRetryable(t *testing.T) {
	live := context.Background()
	expired, cancel := context.WithDeadline(live, time.Now().Add(-time.Second))
	defer cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{live, status.Error(codes.Unavailable, "connection refused"), true},
		{live, status.Error(codes.ResourceExhausted, "busy"), true},
		{live, status.Error(codes.Aborted, "conflict"), true},
		{live, fmt.Errorf("remote FindMissingBlobs: %w", status.Error(codes.Unavailable, "x")), true},
		{live, status.Error(codes.DeadlineExceeded, "a proxy's own deadline"), true},
		{expired, status.Error(codes.DeadlineExceeded, "the caller's deadline"), false},
		{live, status.Error(codes.Canceled, "x"), false},
		{live, status.Error(codes.InvalidArgument, "x"), false},
		{live, status.Error(codes.FailedPrecondition, "x"), false},
		{live, status.Error(codes.NotFound, "a cache miss"), false},
		{live, status.Error(codes.PermissionDenied, "x"), false},
		{live, status.Error(codes.Unauthenticated, "x"), false},
		{live, status.Error(codes.Unimplemented, "x"), false},
		{live, io.EOF, false},
		{live, errors.New("not a status"), false},
		{live, nil, false},
	} {
		if got := Retryable(tc.ctx, tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRetriesCutShortByTheCallerSayTheCallersCode: when the caller's
// context ends during a pause between tries, the call fails with the
// context's code (DEADLINE_EXCEEDED, CANCELLED), not the last try's
// UNAVAILABLE, which a caller would take for the server's state; the
// message keeps the last try's.
func TestRetriesCutShortByTheCallerSayTheCallersCode(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "storage is restarting")
	tries := 0
	try := func() error { tries++; return unavailable }
	p := RetryPolicy{Retries: 5, FirstPause: time.Hour}.withDefaults()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := retrier{p: p}
	err := r.do(ctx, unavailable, try)
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "storage is restarting") || tries != 0 {
		t.Errorf("deadline during a pause: %v after %d tries; want DEADLINE_EXCEEDED with the last try's message", err, tries)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	r = retrier{p: p}
	if err := r.do(ctx, unavailable, try); status.Code(err) != codes.Canceled {
		t.Errorf("cancelled: %v; want CANCELLED", err)
	}
}
