package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy says how often, and after what pauses, a call that failed
// for a passing reason (Retryable) is tried again: the storage calls of a
// connection dialled with its DialOptions, and Execute when its stream
// breaks. One policy serves both, so that a client rides out a restart of
// storage and of the scheduler alike: before it, paddock run resumed
// Execute through a scheduler restart but failed on the first storage
// call made while the farm was down (FindMissingBlobs, 0.4 s after a
// kill -9), where Bazel with --remote_retries got through.
type RetryPolicy struct {
	// Retries is how many times one call is tried again after its first
	// try failed (for Execute: how many breaks in a row it resumes from);
	// 0 tries every call once.
	Retries int
	// FirstPause is the pause before the first retry; each next one
	// doubles, up to MaxPause, and each is moved by up to retryJitter of
	// itself at random, so that clients refused together do not come back
	// together. Zero: the default's.
	FirstPause, MaxPause time.Duration
}

// The default policy: pauses of 250 ms doubling to 10 s, 12 retries,
// about 76 s in all. It is what Execute has always resumed with, which
// outlasts a scheduler's restart (docs/scheduler.md); Bazel's default,
// --remote_retries=5 from 100 ms, lasts about 3 s, which its docs find too
// short for that.
const (
	DefaultRetries    = 12
	defaultFirstPause = 250 * time.Millisecond
	defaultMaxPause   = 10 * time.Second
	// retryJitter is the most a pause is moved, as a share of itself.
	retryJitter = 0.2
)

// DefaultRetryPolicy returns the default policy.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Retries: DefaultRetries, FirstPause: defaultFirstPause, MaxPause: defaultMaxPause}
}

// withDefaults is p with its zero pauses set to the default's.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.FirstPause <= 0 {
		p.FirstPause = defaultFirstPause
	}
	if p.MaxPause <= 0 {
		p.MaxPause = defaultMaxPause
	}
	p.MaxPause = max(p.MaxPause, p.FirstPause)
	return p
}

// pause is the pause before retry n (from 0) of p, which has its
// defaults: FirstPause doubled n times, at most MaxPause, then moved by
// (2r-1)·retryJitter of itself, r being a random number in [0, 1).
func (p RetryPolicy) pause(n int, r float64) time.Duration {
	d := p.FirstPause
	for ; n > 0 && d < p.MaxPause; n-- {
		d *= 2
	}
	d = min(d, p.MaxPause)
	return d + time.Duration(float64(d)*retryJitter*(2*r-1))
}

// Retryable tells whether a call that failed with err, made under ctx,
// may be tried again: the server could not be reached or is restarting
// (UNAVAILABLE), is busy (RESOURCE_EXHAUSTED), gave up on a conflict
// (ABORTED), or a deadline of the attempt's own passed (DEADLINE_EXCEEDED
// while ctx, the caller's, is still live: a server's or a proxy's bound
// on one call). Everything else is an answer that another try would only
// repeat: a refusal of the request (INVALID_ARGUMENT,
// FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED…), a NOT_FOUND
// (a cache miss is not an error), and the end of the caller's own
// deadline or its cancellation.
func Retryable(ctx context.Context, err error) bool {
	return err != nil && retryableCode(ctx, status.Code(err))
}

func retryableCode(ctx context.Context, c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	case codes.DeadlineExceeded:
		return ctx.Err() == nil
	}
	return false
}

// retrier counts the retries of one call (a unary call, or a stream
// however often it is opened again) against its policy's budget. Not for
// concurrent use.
type retrier struct {
	p RetryPolicy // with its defaults
	n int         // retries made so far
}

// Retryable is Retryable, as a retrystream.Retrier.
func (r *retrier) Retryable(ctx context.Context, _ string, err error) bool {
	return Retryable(ctx, err)
}

// Retry is do, as a retrystream.Retrier.
func (r *retrier) Retry(ctx context.Context, _ string, err error, try func() error) error {
	return r.do(ctx, err, try)
}

// do calls try again, after a pause, while err (the last try's) is
// Retryable and the budget lasts, and returns the last try's error; when
// the budget is spent, that error says so and keeps its code; when ctx
// ends first, the error has ctx's code (DEADLINE_EXCEEDED or CANCELLED)
// and the last try's message.
func (r *retrier) do(ctx context.Context, err error, try func() error) error {
	for Retryable(ctx, err) {
		if r.n >= r.p.Retries {
			if r.n == 0 {
				return err
			}
			return fmt.Errorf("%w (gave up after %d retries)", err, r.n)
		}
		if !clock.Sleep(ctx, r.p.pause(r.n, rand.Float64())) {
			// The caller's own deadline or cancellation, with its code:
			// a caller that branches on the code took UNAVAILABLE, the
			// last try's, for the server's state.
			return status.Errorf(status.FromContextError(ctx.Err()).Code(), "%v (not retried: %v)", grpcerr.Convert(err).Message(), context.Cause(ctx))
		}
		r.n++
		err = try()
	}
	return err
}
