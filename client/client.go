// Package client is a reusable REv2 client: it uploads what the server is
// missing (small blobs in batches, large ones through ByteStream), builds
// input trees and Actions for the protocol version the caller speaks,
// executes them (following the operation, and WaitExecution when the
// stream breaks), reads blobs back and writes an ActionResult's outputs
// into a local directory. A RetryPolicy says how often Execute resumes,
// and, on a connection dialled with its DialOptions, how often a storage
// call that failed for a passing reason is tried again. It speaks plain
// REv2, so it works against any farm. `paddock bench` and `paddock run`
// are built on it.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// Options configure a Client.
type Options struct {
	// Instance is the REv2 instance name of every call.
	Instance string
	// Headers are added to every call as gRPC metadata.
	Headers map[string]string
	// MaxBatchBytes bounds BatchUpdateBlobs and BatchReadBlobs requests;
	// blobs above half of it go through ByteStream. Default 2 MiB, under
	// gRPC's default 4 MiB message limit.
	MaxBatchBytes int64
	// Retry is how often, and after what pauses, Execute resumes a
	// broken stream; nil: DefaultRetryPolicy(). Storage calls are tried
	// again only on a connection dialled with a policy's DialOptions,
	// which should be this one.
	Retry *RetryPolicy
}

// Client is an REv2 client over one connection. It is safe for
// concurrent use.
type Client struct {
	opts  Options
	retry RetryPolicy // opts.Retry's, with its defaults
	cas   repb.ContentAddressableStorageClient
	ac    repb.ActionCacheClient
	exec  repb.ExecutionClient
	store *storage.RemoteBlobStore // blob moves: batches for small, ByteStream for large
}

// New returns a client over conn, which must serve the CAS, ByteStream
// and Execution services (as one REv2 endpoint does).
func New(conn grpc.ClientConnInterface, opts Options) *Client {
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 2 << 20
	}
	retry := DefaultRetryPolicy()
	if opts.Retry != nil {
		retry = opts.Retry.withDefaults()
	}
	return &Client{
		opts:  opts,
		retry: retry,
		cas:   repb.NewContentAddressableStorageClient(conn),
		ac:    repb.NewActionCacheClient(conn),
		exec:  repb.NewExecutionClient(conn),
		store: storage.NewRemoteBlobStore(conn, storage.RemoteOptions{InstanceName: opts.Instance, MaxBatchBytes: opts.MaxBatchBytes}),
	}
}

// CAS is the raw CAS client (for callers that measure single RPCs).
func (c *Client) CAS() repb.ContentAddressableStorageClient { return c.cas }

// ActionCache is the raw action cache client.
func (c *Client) ActionCache() repb.ActionCacheClient { return c.ac }

// Context returns ctx with the client's headers added.
func (c *Client) Context(ctx context.Context) context.Context {
	if len(c.opts.Headers) == 0 {
		return ctx
	}
	kv := make([]string, 0, 2*len(c.opts.Headers))
	for k, v := range c.opts.Headers {
		kv = append(kv, k, v)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// UploadStats says what an Upload moved.
type UploadStats struct {
	// Blobs and Bytes are the distinct blobs asked for.
	Blobs int
	Bytes int64
	// MissingBlobs and MissingBytes are those the server lacked, and
	// uploaded.
	MissingBlobs int
	MissingBytes int64
}

// Upload stores the blobs the server is missing (FindMissingBlobs first):
// small ones in batches, large ones through ByteStream.
func (c *Client) Upload(ctx context.Context, blobs []Blob) (UploadStats, error) {
	ctx = c.Context(ctx)
	var st UploadStats
	byDigest := map[digest.Digest]Blob{}
	var ds []digest.Digest
	for _, b := range blobs {
		if _, dup := byDigest[b.Digest]; !dup {
			byDigest[b.Digest] = b
			ds = append(ds, b.Digest)
			st.Blobs++
			st.Bytes += b.Digest.SizeBytes()
		}
	}
	missing, err := c.store.FindMissing(ctx, ds)
	if err != nil {
		return st, fmt.Errorf("FindMissingBlobs: %w", err)
	}
	batch := map[digest.Digest][]byte{}
	var size int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.store.PutMany(ctx, batch)
		batch, size = map[digest.Digest][]byte{}, 0
		return err
	}
	limit := c.opts.MaxBatchBytes
	for _, d := range missing {
		st.MissingBlobs++
		st.MissingBytes += d.SizeBytes()
		b := byDigest[d]
		if d.SizeBytes() > limit/2 {
			if err := c.put(ctx, b); err != nil {
				return st, err
			}
			continue
		}
		if size+d.SizeBytes() > limit {
			if err := flush(); err != nil {
				return st, err
			}
		}
		data, err := b.bytes()
		if err != nil {
			return st, fmt.Errorf("upload %s: %w", d, err)
		}
		batch[d] = data
		size += d.SizeBytes()
	}
	return st, flush()
}

// Write uploads one blob whether or not the server has it (ByteStream for
// large ones).
func (c *Client) Write(ctx context.Context, b Blob) error {
	return c.put(c.Context(ctx), b)
}

func (c *Client) put(ctx context.Context, b Blob) error {
	r, err := b.open()
	if err != nil {
		return fmt.Errorf("upload %s: %w", b.Digest, err)
	}
	defer r.Close()
	if err := c.store.Put(ctx, b.Digest, r); err != nil {
		return fmt.Errorf("upload %s: %w", b.Digest, err)
	}
	return nil
}

// Read downloads one blob into memory; the bytes are checked against the
// digest. Use ReadTo for a blob whose size is not known to be small.
func (c *Client) Read(ctx context.Context, d digest.Digest) ([]byte, error) {
	if d.IsEmpty() {
		return []byte{}, nil
	}
	r, err := c.store.Get(c.Context(ctx), d, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	return data, nil
}

// ReadProto downloads a blob and parses it into m. The blob is held in
// memory whole, so one over storage.MaxTreeBytes (the largest Tree a
// server keeps) is refused before it is read.
func (c *Client) ReadProto(ctx context.Context, d digest.Digest, m proto.Message) error {
	if d.SizeBytes() > storage.MaxTreeBytes {
		return status.Errorf(codes.ResourceExhausted, "read %s: %s blob is over %d bytes", d, proto.MessageName(m), storage.MaxTreeBytes)
	}
	data, err := c.Read(ctx, d)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("read %s: %s: %w", d, proto.MessageName(m), err)
	}
	return nil
}

// Execute runs a stored action and returns the final ExecuteResponse,
// following the operation stream to the end. If the stream breaks
// (UNAVAILABLE or an early end: the scheduler restarting, a connection
// lost), or cannot be opened at all (the scheduler down), it resumes with
// WaitExecution after the growing pauses of the client's RetryPolicy,
// for up to its Retries breaks in a row (by default 12, about a minute
// and a half; a resumed stream that cannot even be opened, the scheduler
// still down, is one more break). If the stream broke before naming its
// operation, or the scheduler no longer knows the operation (NOT_FOUND:
// restarted without a journal), it calls Execute again, as the REv2 spec
// lets a client. The response's own status is left for the caller.
func (c *Client) Execute(ctx context.Context, req *repb.ExecuteRequest) (*repb.ExecuteResponse, error) {
	ctx = c.Context(ctx)
	if req.InstanceName == "" {
		req.InstanceName = c.opts.Instance
	}
	if req.DigestFunction == repb.DigestFunction_UNKNOWN {
		req.DigestFunction = repb.DigestFunction_SHA256
	}
	d := req.ActionDigest.GetHash()
	stream, err := c.exec.Execute(ctx, req)
	name, breaks, opened := "", 0, time.Now()
	for {
		got := false
		if err == nil { // else opening the stream failed, with err
			var resp *repb.ExecuteResponse
			if resp, got, err = followOperation(stream, &name); err == nil {
				return resp, nil
			}
		}
		var final finalError
		if errors.As(err, &final) {
			return nil, fmt.Errorf("execute %s: %w", d, final.error)
		}
		if got && time.Since(opened) >= healthyStream {
			breaks = 0 // the stream worked a while before it broke
		}
		resumable := status.Code(err) == codes.Unavailable || errors.Is(err, io.EOF) || status.Code(err) == codes.NotFound
		if breaks >= c.retry.Retries || !resumable {
			return nil, fmt.Errorf("execute %s: %w", d, err)
		}
		if !clock.Sleep(ctx, c.retry.pause(breaks, rand.Float64())) {
			return nil, fmt.Errorf("execute %s: %w (resuming operation %s)", d, context.Cause(ctx), name)
		}
		breaks++
		if name == "" || status.Code(err) == codes.NotFound {
			// No operation named yet (the Execute may or may not have
			// been taken: the scheduler deduplicates a second one), or
			// the operation is gone: execute again.
			stream, err = c.exec.Execute(ctx, req)
		} else {
			stream, err = c.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})
		}
		opened = time.Now()
	}
}

// healthyStream is how long an operation stream must have lasted, with a
// message, for its break to start the count of breaks in a row again: a
// scheduler restarting, or a proxy cutting idle streams, breaks one after
// minutes. Counted as soon as one message came, a server answering each
// stream with one unfinished operation and ending it kept a client
// resuming for ever.
var healthyStream = 30 * time.Second

// finalError is how an operation ended (its own error), as opposed to its
// stream breaking: Execute does not resume from it.
type finalError struct{ error }

// followOperation reads an operation stream to its end. It sets *name
// from the messages and reports whether any came. err is the stream's
// error, or a finalError: how the operation itself ended, which is not
// resumed.
func followOperation(stream grpc.ServerStreamingClient[longrunningpb.Operation], name *string) (resp *repb.ExecuteResponse, got bool, err error) {
	for {
		op, err := stream.Recv()
		if err != nil {
			return nil, got, err
		}
		got = true
		*name = op.Name
		if !op.Done {
			continue
		}
		if e := op.GetError(); e != nil {
			return nil, got, finalError{status.FromProto(e).Err()}
		}
		resp := &repb.ExecuteResponse{}
		if err := op.GetResponse().UnmarshalTo(resp); err != nil {
			return nil, got, finalError{fmt.Errorf("operation response: %w", err)}
		}
		return resp, got, nil
	}
}
