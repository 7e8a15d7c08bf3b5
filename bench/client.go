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
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
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

// Client runs the scenarios over a client.Client.
type Client struct {
	opts Options
	rc   *client.Client
	run  string // distinguishes this run's actions from every other's
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
		opts: opts,
		rc:   client.New(conn, client.Options{Instance: opts.Instance, Headers: opts.Headers, MaxBatchBytes: int64(opts.MaxBatchBytes)}),
		run:  hex.EncodeToString(salt),
	}
}

// upload stores the blobs the server is missing.
func (c *Client) upload(ctx context.Context, blobs []client.Blob) error {
	_, err := c.rc.Upload(ctx, blobs)
	return err
}

// action describes one action to run and how to check its result.
type action struct {
	blobs  []client.Blob
	digest digest.Digest
	check  func(ctx context.Context, r *repb.ActionResult) error
}

// newAction builds an action running args with input root root (its
// subdirectories' blobs in extra) and declared outputs, with REv2 2.1
// fields (output_paths; the platform in both Command and Action).
func (c *Client) newAction(args []string, root *repb.Directory, extra []client.Blob, outputs []string) action {
	rb := client.ProtoBlob(root)
	ab, cb := client.ActionSpec{
		Arguments:   args,
		Environment: map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"},
		OutputFiles: outputs,
		Platform:    c.opts.Platform,
		InputRoot:   rb.Digest,
	}.Build(client.V2_1)
	return action{blobs: append([]client.Blob{cb, rb, ab}, extra...), digest: ab.Digest}
}

// execute runs a stored action and returns its response.
func (c *Client) execute(ctx context.Context, d digest.Digest) (*repb.ExecuteResponse, error) {
	return c.rc.Execute(ctx, &repb.ExecuteRequest{InstanceName: c.opts.Instance, ActionDigest: d.Proto()})
}

// runActions executes actions at the configured concurrency, checking each
// result, and returns the report. Uploads happen before the clock starts.
func (c *Client) runActions(ctx context.Context, scenario string, actions []action) (*Report, error) {
	var all []client.Blob
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
