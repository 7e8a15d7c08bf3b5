// Package bench is Paddock's load generator: it speaks plain REv2 to any
// endpoint (Paddock, Buildbarn, BuildBuddy, …) so that figures are
// comparable across farms. Each scenario (Actions, Inputs, Outputs, CAS)
// uploads what its actions need, runs them at a given concurrency, checks
// every result exactly (exit code and output content, so a farm that
// answers quickly but wrongly does not score), and returns a Report with
// throughput and latency percentiles, split by phase where the server fills
// ExecutedActionMetadata, and the CPU time per operation of the whole
// machine and, when the farm runs on it (Options.FarmPID), of the farm's
// process tree, read from /proc over the run.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// Options are shared by every scenario.
type Options struct {
	// Instance is the REv2 instance name.
	Instance string
	// Platform properties set on every action (sorted by the client).
	Platform map[string]string
	// Headers are added to every call as gRPC metadata.
	Headers map[string]string
	// Concurrency is how many operations are in flight; default 8.
	Concurrency int
	// Progress, if set, receives a progress line (carriage-return
	// terminated) about every 200 ms.
	Progress io.Writer
	// MaxBatchBytes bounds BatchUpdateBlobs requests; default 2 MiB.
	MaxBatchBytes int
	// FarmPID, if set, is the pid of the farm under test when it runs on
	// this machine (`paddock up`): every report then has the CPU time of
	// its process tree per operation (Report.FarmCPU).
	FarmPID int
}

// Client is an REv2 client for the scenarios.
type Client struct {
	opts  Options
	cas   repb.ContentAddressableStorageClient
	exec  repb.ExecutionClient
	store *storage.RemoteBlobStore // blob moves: batches for small, ByteStream for large
	run   string                   // distinguishes this run's actions from every other's
}

// NewClient returns a client over conn.
func NewClient(conn grpc.ClientConnInterface, opts Options) *Client {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 2 << 20
	}
	salt := make([]byte, 8)
	rand.Read(salt)
	return &Client{
		opts:  opts,
		cas:   repb.NewContentAddressableStorageClient(conn),
		exec:  repb.NewExecutionClient(conn),
		store: storage.NewRemoteBlobStore(conn, storage.RemoteOptions{InstanceName: opts.Instance, MaxBatchBytes: int64(opts.MaxBatchBytes)}),
		run:   hex.EncodeToString(salt),
	}
}

func (c *Client) ctx(ctx context.Context) context.Context {
	if len(c.opts.Headers) == 0 {
		return ctx
	}
	kv := make([]string, 0, 2*len(c.opts.Headers))
	for k, v := range c.opts.Headers {
		kv = append(kv, k, v)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func (c *Client) platform() *repb.Platform {
	if len(c.opts.Platform) == 0 {
		return nil
	}
	p := &repb.Platform{}
	for k, v := range c.opts.Platform {
		p.Properties = append(p.Properties, &repb.Platform_Property{Name: k, Value: v})
	}
	sort.Slice(p.Properties, func(i, j int) bool { return p.Properties[i].Name < p.Properties[j].Name })
	return p
}

// blob is a blob to upload.
type blob struct {
	d    digest.Digest
	data []byte
}

func newBlob(data []byte) blob {
	return blob{digest.FromBytes(repb.DigestFunction_SHA256, data), data}
}

func protoBlob(m proto.Message) blob {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return newBlob(b)
}

// upload stores the blobs the server is missing: small ones in batches,
// large ones through ByteStream.
func (c *Client) upload(ctx context.Context, blobs []blob) error {
	ctx = c.ctx(ctx)
	byDigest := map[digest.Digest][]byte{}
	var ds []digest.Digest
	for _, b := range blobs {
		if _, dup := byDigest[b.d]; !dup {
			byDigest[b.d] = b.data
			ds = append(ds, b.d)
		}
	}
	missing, err := c.store.FindMissing(ctx, ds)
	if err != nil {
		return err
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
	limit := c.store.MaxBatchBytes()
	for _, d := range missing {
		if d.SizeBytes() > limit/2 {
			if err := c.write(ctx, d, byDigest[d]); err != nil {
				return err
			}
			continue
		}
		if size+d.SizeBytes() > limit {
			if err := flush(); err != nil {
				return err
			}
		}
		batch[d] = byDigest[d]
		size += d.SizeBytes()
	}
	return flush()
}

// write uploads one blob (ByteStream for large ones).
func (c *Client) write(ctx context.Context, d digest.Digest, data []byte) error {
	return c.store.Put(c.ctx(ctx), d, bytes.NewReader(data))
}

// read downloads one blob and checks its digest.
func (c *Client) read(ctx context.Context, d digest.Digest) ([]byte, error) {
	r, err := c.store.Get(c.ctx(ctx), d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// action describes one action to run and how to check its result.
type action struct {
	blobs  []blob
	digest digest.Digest
	check  func(ctx context.Context, r *repb.ActionResult) error
}

// newAction builds an action running args with input root root (its
// subdirectories' blobs in extra) and declared outputs.
func (c *Client) newAction(args []string, root *repb.Directory, extra []blob, outputs []string) action {
	cmd := &repb.Command{
		Arguments:            args,
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/local/bin:/usr/bin:/bin"}},
		OutputPaths:          outputs,
		Platform:             c.platform(),
	}
	cb := protoBlob(cmd)
	rb := protoBlob(root)
	ab := protoBlob(&repb.Action{
		CommandDigest: cb.d.Proto(), InputRootDigest: rb.d.Proto(), Platform: c.platform(),
	})
	return action{blobs: append([]blob{cb, rb, ab}, extra...), digest: ab.d}
}

// execute runs a stored action and returns its response, following the
// operation stream to the end (and WaitExecution if the stream breaks).
func (c *Client) execute(ctx context.Context, d digest.Digest) (*repb.ExecuteResponse, error) {
	ctx = c.ctx(ctx)
	stream, err := c.exec.Execute(ctx, &repb.ExecuteRequest{
		InstanceName: c.opts.Instance, ActionDigest: d.Proto(),
		DigestFunction: repb.DigestFunction_SHA256,
	})
	if err != nil {
		return nil, err
	}
	name := ""
	for attempt := 0; ; attempt++ {
		for {
			op, err := stream.Recv()
			if err != nil {
				if name == "" || attempt >= 3 || status.Code(err) != codes.Unavailable && !errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("execute %s: %w", d, err)
				}
				break
			}
			name = op.Name
			if !op.Done {
				continue
			}
			if e := op.GetError(); e != nil {
				return nil, status.FromProto(e).Err()
			}
			resp := &repb.ExecuteResponse{}
			if err := op.GetResponse().UnmarshalTo(resp); err != nil {
				return nil, fmt.Errorf("execute %s: operation response: %w", d, err)
			}
			return resp, nil
		}
		if stream, err = c.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name}); err != nil {
			return nil, err
		}
	}
}

// runActions executes actions at the configured concurrency, checking each
// result, and returns the report. Uploads happen before the clock starts.
func (c *Client) runActions(ctx context.Context, scenario string, actions []action) (*Report, error) {
	var all []blob
	for _, a := range actions {
		all = append(all, a.blobs...)
	}
	if err := c.upload(ctx, all); err != nil {
		return nil, fmt.Errorf("%s: upload inputs: %w", scenario, err)
	}
	rec := c.newRecorder(scenario, len(actions))
	work := make(chan action)
	done := make(chan struct{})
	for range c.opts.Concurrency {
		go func() {
			defer func() { done <- struct{}{} }()
			for a := range work {
				start := time.Now()
				resp, err := c.execute(ctx, a.digest)
				total := time.Since(start)
				if err == nil {
					err = status.FromProto(resp.Status).Err()
				}
				if err == nil && resp.Result == nil {
					err = errors.New("response has no result")
				}
				if err == nil && resp.Result.ExitCode != 0 {
					err = fmt.Errorf("exit code %d", resp.Result.ExitCode)
				}
				if err == nil {
					err = a.check(ctx, resp.Result)
				}
				if err != nil {
					rec.fail(fmt.Errorf("action %s: %w", a.digest, err))
					continue
				}
				rec.ok(total, resp.Result.ExecutionMetadata)
			}
		}()
	}
	for _, a := range actions {
		select {
		case work <- a:
		case <-ctx.Done():
		}
	}
	close(work)
	for range c.opts.Concurrency {
		<-done
	}
	return rec.report(), ctx.Err()
}

// wantStdout checks a result's stdout against exact bytes by digest, so
// checking costs no download.
func wantStdout(want string) func(context.Context, *repb.ActionResult) error {
	wd := digest.FromBytes(repb.DigestFunction_SHA256, []byte(want))
	return func(_ context.Context, r *repb.ActionResult) error {
		if r.StdoutDigest.GetHash() != wd.Hash() || r.StdoutDigest.GetSizeBytes() != wd.SizeBytes() {
			if len(r.StdoutRaw) > 0 && string(r.StdoutRaw) == want {
				return nil
			}
			return fmt.Errorf("stdout is not %q (digest %s/%d)", want, r.StdoutDigest.GetHash(), r.StdoutDigest.GetSizeBytes())
		}
		return nil
	}
}
