package worker

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpcerr"
)

// unaryWait is a unary storage call waiting for storage
// (storageWaiter.Retry). Until the call has an answer it is sent again
// whole; once it has one, only the entries of its batch reply
// (BatchReadBlobs, BatchUpdateBlobs) answered UNAVAILABLE are sent
// again, alone, and their new answers take their place in the reply. A
// storage front whose backend shard is down answers a batch OK, with an
// UNAVAILABLE entry for each blob on that shard: taken for an answer, it
// failed every action that read or wrote such a blob within
// milliseconds, retries and all. Entries answered otherwise (present,
// NOT_FOUND, INVALID_ARGUMENT…) are left as they came and never sent
// again. Not for concurrent use.
type unaryWait struct {
	ctx        context.Context
	method     string
	req, reply any
	cc         *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	opts       []grpc.CallOption
	answered   bool // reply holds storage's answer to the whole call
}

// try sends what still waits for an answer: the whole call, or the
// entries of its reply answered UNAVAILABLE. It fails UNAVAILABLE while
// anything still waits.
func (c *unaryWait) try() error {
	if c.answered {
		return c.resend()
	}
	if err := c.invoker(c.ctx, c.method, c.req, c.reply, c.cc, c.opts...); err != nil {
		return err
	}
	c.answered = true
	return unavailableEntry(c.reply)
}

// resend sends the entries of the request whose answer was UNAVAILABLE
// again, each digest once, and puts the new answers in the reply. An
// entry that cannot be matched to the request (by digest) is left
// UNAVAILABLE, and not waited for.
func (c *unaryWait) resend() error {
	switch r := c.reply.(type) {
	case *repb.BatchReadBlobsResponse:
		q, _ := c.req.(*repb.BatchReadBlobsRequest)
		sub := &repb.BatchReadBlobsRequest{
			InstanceName: q.GetInstanceName(), DigestFunction: q.GetDigestFunction(), AcceptableCompressors: q.GetAcceptableCompressors(),
			Digests: pending(q.GetDigests(), func(d *repb.Digest) *repb.Digest { return d }, r.Responses),
		}
		if len(sub.Digests) == 0 {
			return nil
		}
		again := &repb.BatchReadBlobsResponse{}
		if err := c.invoker(c.ctx, c.method, sub, again, c.cc, c.opts...); err != nil {
			return err
		}
		merge(r.Responses, again.Responses)
		return firstUnavailable(r.Responses)
	case *repb.BatchUpdateBlobsResponse:
		q, _ := c.req.(*repb.BatchUpdateBlobsRequest)
		sub := &repb.BatchUpdateBlobsRequest{
			InstanceName: q.GetInstanceName(), DigestFunction: q.GetDigestFunction(),
			Requests: pending(q.GetRequests(), (*repb.BatchUpdateBlobsRequest_Request).GetDigest, r.Responses),
		}
		if len(sub.Requests) == 0 {
			return nil
		}
		again := &repb.BatchUpdateBlobsResponse{}
		if err := c.invoker(c.ctx, c.method, sub, again, c.cc, c.opts...); err != nil {
			return err
		}
		merge(r.Responses, again.Responses)
		return firstUnavailable(r.Responses)
	}
	return nil
}

// finish is the call's error once the wait ended with err. Without an
// answer, or with its context ended, it is err, as before. With an
// answer it is nil, and the entries still UNAVAILABLE carry err (the
// wait ran out, or storage refused their resending as a whole): the
// caller gets the reply's shape it asked for, and the entries that were
// answered.
func (c *unaryWait) finish(err error) error {
	if err == nil || !c.answered || c.ctx.Err() != nil {
		return err
	}
	st := grpcerr.Convert(err).Proto()
	switch r := c.reply.(type) {
	case *repb.BatchReadBlobsResponse:
		for _, e := range r.Responses {
			if unavailable(e) {
				e.Status = st
			}
		}
	case *repb.BatchUpdateBlobsResponse:
		for _, e := range r.Responses {
			if unavailable(e) {
				e.Status = st
			}
		}
	}
	return nil
}

// batchEntry is an entry of a batch reply.
type batchEntry interface {
	GetDigest() *repb.Digest
	GetStatus() *rpcstatus.Status
}

// unavailableEntry is the status of the first entry of reply, if it is a
// batch reply, answered UNAVAILABLE; nil if none was. It allocates
// nothing when none was: it runs on every batch call.
func unavailableEntry(reply any) error {
	switch r := reply.(type) {
	case *repb.BatchReadBlobsResponse:
		return firstUnavailable(r.Responses)
	case *repb.BatchUpdateBlobsResponse:
		return firstUnavailable(r.Responses)
	}
	return nil
}

func firstUnavailable[E batchEntry](es []E) error {
	for _, e := range es {
		if unavailable(e) {
			return status.ErrorProto(e.GetStatus())
		}
	}
	return nil
}

func unavailable(e batchEntry) bool {
	return codes.Code(e.GetStatus().GetCode()) == codes.Unavailable
}

// digestKey identifies a digest in a batch: the request's digest function
// is the same for all of them.
type digestKey struct {
	hash string
	size int64
}

func keyOf(d *repb.Digest) digestKey { return digestKey{d.GetHash(), d.GetSizeBytes()} }

// pending is the items of a request whose digest (digestOf) is that of an
// UNAVAILABLE entry of its reply es, each digest once.
func pending[I any, E batchEntry](items []I, digestOf func(I) *repb.Digest, es []E) []I {
	want := map[digestKey]bool{}
	for _, e := range es {
		if unavailable(e) {
			want[keyOf(e.GetDigest())] = true
		}
	}
	var out []I
	for _, it := range items {
		if k := keyOf(digestOf(it)); want[k] {
			out = append(out, it)
			delete(want, k)
		}
	}
	return out
}

// merge puts the entries of again in place of the UNAVAILABLE entries of
// es with the same digest.
func merge[E batchEntry](es, again []E) {
	byKey := make(map[digestKey]E, len(again))
	for _, e := range again {
		byKey[keyOf(e.GetDigest())] = e
	}
	for i, e := range es {
		if n, ok := byKey[keyOf(e.GetDigest())]; ok && unavailable(e) {
			es[i] = n
		}
	}
}
