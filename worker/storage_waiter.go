package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/retrystream"
	"github.com/paddock-build/paddock/storage"
)

// DefaultStorageWait is how long a worker's storage call waits for a
// storage that answers UNAVAILABLE (restarting, or unreachable) before it
// fails: as long as an action waits for a restarting runner
// (RunnerClient). Without it, every action on the worker failed within
// milliseconds of a storage restart, was requeued to the same worker and
// failed again, until the scheduler's retry budget was spent and the
// queue was empty.
const DefaultStorageWait = 30 * time.Second

// The pause between tries of a call while storage is unavailable starts
// at storageRetryFirst and doubles up to storageRetryMax: soon enough
// after storage is back, rarely enough not to spin through an outage.
const (
	storageRetryFirst = 100 * time.Millisecond
	storageRetryMax   = 2 * time.Second
)

// idempotentStorageMethods are the storage calls that may be sent again
// after UNAVAILABLE: in REv2 each of them reads, or writes content
// addressed by its digest, so a second try has the effect of one. Any
// other call on the connection fails as it did.
var idempotentStorageMethods = map[string]bool{
	repb.ContentAddressableStorage_FindMissingBlobs_FullMethodName: true,
	repb.ContentAddressableStorage_BatchReadBlobs_FullMethodName:   true,
	repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName: true,
	repb.ContentAddressableStorage_GetTree_FullMethodName:          true,
	repb.ActionCache_GetActionResult_FullMethodName:                true,
	repb.ActionCache_UpdateActionResult_FullMethodName:             true,
	repb.Capabilities_GetCapabilities_FullMethodName:               true,
	retrystream.ByteStreamRead:                                     true,
	retrystream.ByteStreamWrite:                                    true,
}

// StorageWaitOptions configures StorageDialOptions.
type StorageWaitOptions struct {
	// Wait bounds how long one call waits for storage, from its first
	// UNAVAILABLE answer (of the call, or of an entry of its batch
	// reply); it then fails with UNAVAILABLE as before (a batch's
	// entries still waiting do), and its action is reported retryable.
	// Default DefaultStorageWait.
	Wait time.Duration
	// Logger gets one WARN when storage becomes unavailable and one
	// INFO when it answers again, however many calls wait meanwhile.
	Logger *slog.Logger
}

// StorageDialOptions are the dial options of a worker's connection to
// storage that let its calls ride out a storage restart, or an outage of
// one shard behind a storage front: an idempotent call
// (idempotentStorageMethods) answered UNAVAILABLE is tried again, with
// backoff, until it gets another answer, its context ends, or o.Wait has
// passed. Other codes (RESOURCE_EXHAUSTED, NOT_FOUND,
// FAILED_PRECONDITION…) pass straight through. Beside an answer of the
// whole call, the wait covers what a front answers for one shard: the
// entries of a BatchReadBlobs or BatchUpdateBlobs reply answered
// UNAVAILABLE are sent again, alone (unaryWait); a ByteStream Write
// answered UNAVAILABLE after it started is written again from its first
// byte when the caller can give the bytes again (storage.WriteSource:
// RemoteBlobStore.Put of a file or of bytes in memory;
// retrystream.Write),
// and otherwise only while it cannot start; a ByteStream Read that
// breaks part way resumes where it broke (CAS bytes never change; a
// compressed Read does not resume), and a GetTree is tried again until
// its first page. A call that succeeds at once costs nothing more, but
// for a Read or GetTree the small wrapper that keeps its request
// (BenchmarkStorageCallWhenUp), and for a Write that can be written
// again the wrapper and the context carrying its source.
func StorageDialOptions(o StorageWaitOptions) []grpc.DialOption {
	w := &storageWaiter{wait: o.Wait, logger: o.Logger}
	if w.wait <= 0 {
		w.wait = DefaultStorageWait
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(w.unary), grpc.WithChainStreamInterceptor(w.stream)}
}

// storageWaiter holds the interceptors' bound and the outage they log.
// Safe for concurrent use.
type storageWaiter struct {
	wait   time.Duration
	logger *slog.Logger

	mu      sync.Mutex
	waiting int       // calls waiting for storage now; an outage lasts while > 0
	since   time.Time // when the outage began
}

// retryable tells whether a call of method that failed with err may be
// tried again.
func retryable(method string, err error) bool {
	return status.Code(err) == codes.Unavailable && idempotentStorageMethods[method]
}

// unary is the interceptor of unary calls: the call as it was, and a
// wait only once it failed UNAVAILABLE, or some entries of its batch
// reply did.
func (w *storageWaiter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	answered := err == nil
	if answered {
		if err = unavailableEntry(reply); err == nil {
			return nil
		}
	} else if !retryable(method, err) {
		return err
	}
	c := &unaryWait{ctx: ctx, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, answered: answered}
	return c.finish(w.Retry(ctx, method, err, c.try))
}

// stream is the interceptor of streaming calls: it opens the stream,
// waiting for storage if it cannot, and wraps a Read or GetTree in a
// retrystream.Read and a Write whose bytes can be read again in a
// retrystream.Write.
func (w *storageWaiter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err == nil && !idempotentStorageMethods[method] {
		return s, nil
	}
	if err != nil && !retryable(method, err) {
		return nil, err
	}
	call := &retrystream.Call{Ctx: ctx, Desc: desc, CC: cc, Method: method, Streamer: streamer, Opts: opts, Retrier: w}
	if err != nil {
		if s, err = call.OpenRetrying(err); err != nil {
			return nil, err
		}
	}
	if desc.ClientStreams {
		src, ok := storage.WriteSource(ctx)
		if !ok || method != retrystream.ByteStreamWrite {
			return s, nil
		}
		return retrystream.NewWrite(s, call, src), nil
	}
	return retrystream.NewRead(s, call), nil
}

// Retryable is retryable, as a retrystream.Retrier.
func (w *storageWaiter) Retryable(_ context.Context, method string, err error) bool {
	return retryable(method, err)
}

// Retry calls call, after a pause that grows between tries, until it
// answers other than UNAVAILABLE, ctx ends, or w.wait has passed since
// the first failure err of method.
func (w *storageWaiter) Retry(ctx context.Context, method string, err error, call func() error) error {
	w.begin(method, err)
	deadline := time.Now().Add(w.wait)
	pause := storageRetryFirst
	for {
		if !clock.Sleep(ctx, min(pause, time.Until(deadline))) {
			w.end(false)
			return status.FromContextError(ctx.Err()).Err()
		}
		err = call()
		if status.Code(err) != codes.Unavailable {
			w.end(true) // storage answered, whatever it said
			return err
		}
		if !time.Now().Before(deadline) {
			w.end(false)
			return status.Errorf(codes.Unavailable, "storage still unavailable after waiting %s: %s", w.wait, grpcerr.Convert(err).Message())
		}
		pause = min(2*pause, storageRetryMax)
	}
}

// begin counts a call that waits for storage, logging the outage if it is
// the first.
func (w *storageWaiter) begin(method string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiting == 0 {
		w.since = time.Now()
		w.logger.Warn("storage unavailable, waiting for it", "wait", w.wait, "method", method, "error", err)
	}
	w.waiting++
}

// end counts a call that stopped waiting, answered (ok) or not (its
// context ended, or it gave up); the last one, if answered, logs the end
// of the outage.
func (w *storageWaiter) end(ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting--
	if w.waiting == 0 && ok {
		w.logger.Info("storage available again", "after", time.Since(w.since).Round(time.Millisecond))
	}
}
