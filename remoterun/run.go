// Package remoterun runs one local command on an REv2 farm, as recc does:
// it builds the input root from the paths the user lists (and, for a C or
// C++ compile, from the files the compiler reports with -M), uploads what
// the server lacks, executes the action (a cache hit when nothing
// changed), writes the command's stdout and stderr and its outputs into
// place, and hands back the command's exit code. Every listed path is
// checked before anything is uploaded.
package remoterun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// Options describe one remote run.
type Options struct {
	// Args is the command; Args[0] is looked up in the remote PATH.
	Args []string
	// Root is the local directory that becomes the input root; Dir, the
	// command's local working directory, is inside it.
	Root, Dir string
	// Inputs and Outputs are local paths relative to Dir (or absolute,
	// for inputs); OutputDirs are output directories.
	Inputs, Outputs, OutputDirs []string
	// OutputNodeProperties are asked of the server for every output.
	OutputNodeProperties []string
	// NoCompilerDeps turns off asking a compiler for its dependencies.
	NoCompilerDeps bool
	Environment    map[string]string
	Platform       map[string]string
	API            client.APIVersion
	// SkipCache runs the action even if the cache has a result.
	SkipCache bool
	// DoNotCache asks the server not to cache the result.
	DoNotCache bool
	// Timeout, if set, bounds the execution on the server; the whole run
	// (upload, queueing, execution, download) is then bounded here too,
	// by Timeout plus WaitGrace, so a server that never answers cannot
	// hang the caller.
	Timeout time.Duration
	// WaitGrace is the time beyond Timeout a run may take; default
	// DefaultWaitGrace.
	WaitGrace time.Duration
	// Stdout and Stderr receive the command's.
	Stdout, Stderr io.Writer
	// Log, if set, receives one summary line: the action's digest,
	// whether the cache answered, and what was uploaded.
	Log io.Writer
}

// Result is what a finished run reports.
type Result struct {
	ExitCode int
	Cached   bool
	Action   digest.Digest
	Uploaded client.UploadStats
}

// DefaultWaitGrace is the default Options.WaitGrace: generous, since a
// busy farm may queue an action for minutes and a large output takes time
// to download.
const DefaultWaitGrace = 15 * time.Minute

// Run runs the command remotely with c. An error means the run did not
// happen or its outputs could not be written; a command that ran and
// failed is a Result with its exit code. Cancelling ctx stops the run,
// also while outputs are being written.
func Run(ctx context.Context, c *client.Client, opts Options) (res *Result, err error) {
	p, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.Timeout > 0 {
		grace := opts.WaitGrace
		if grace <= 0 {
			grace = DefaultWaitGrace
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout+grace)
		defer cancel()
		deadline, _ := ctx.Deadline()
		defer func() {
			// The server may cut a stream a moment before ctx's own timer
			// fires (grpc-timeout is rounded), hence the second test.
			if err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded && time.Until(deadline) < time.Second) {
				err = fmt.Errorf("gave up after the timeout %s plus %s of grace: %w", opts.Timeout, grace, err)
			}
		}()
	}
	res = &Result{Action: p.action.Digest}
	if !opts.SkipCache {
		// As recc does: a hit costs no upload, and an identity that may
		// read the caches but not execute gets it too. A miss, or a
		// refusal, leaves executing it; a lookup that ran out of retries
		// (the farm down or busy) ends the run, as the upload would only
		// spend as long again.
		if r, err := c.CachedResult(ctx, p.action.Digest); err == nil {
			if err := finish(ctx, c, opts, p, &repb.ExecuteResponse{Result: r, CachedResult: true}, res); err != nil {
				return nil, err
			}
			return res, nil
		} else if ctx.Err() != nil || client.Retryable(ctx, err) {
			return nil, err
		}
	}
	if res.Uploaded, err = c.Upload(ctx, p.blobs); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	resp, err := executeUploadingMissing(ctx, c, p, &repb.ExecuteRequest{ActionDigest: p.action.Digest.Proto(), SkipCacheLookup: opts.SkipCache}, res)
	if err != nil {
		return nil, err
	}
	if err = finish(ctx, c, opts, p, resp, res); err != nil {
		return nil, err
	}
	return res, nil
}

// executeFailed is the error of an execution whose status failed, with
// the response's message after it, if any.
func executeFailed(p *prepared, failed error, message string) error {
	if message == "" {
		return fmt.Errorf("execute %s: %w", p.action.Digest, failed)
	}
	return fmt.Errorf("execute %s: %w (%s)", p.action.Digest, failed, message)
}

// finish writes what the command printed and its outputs, and fills res.
func finish(ctx context.Context, c *client.Client, opts Options, p *prepared, resp *repb.ExecuteResponse, res *Result) error {
	r := resp.Result
	failed := status.FromProto(resp.Status).Err()
	if r == nil {
		if failed != nil {
			return executeFailed(p, failed, resp.Message)
		}
		return fmt.Errorf("execute %s: the response has no result", p.action.Digest)
	}
	res.ExitCode, res.Cached = int(r.ExitCode), resp.CachedResult
	// What the command printed comes first, also when the execution
	// failed (a timeout keeps what was written before it).
	if opts.Stdout != nil {
		if err := c.WriteStream(ctx, opts.Stdout, "stdout", r.StdoutRaw, r.StdoutDigest); err != nil {
			return fmt.Errorf("stdout: %w", err)
		}
	}
	if opts.Stderr != nil {
		if err := c.WriteStream(ctx, opts.Stderr, "stderr", r.StderrRaw, r.StderrDigest); err != nil {
			return fmt.Errorf("stderr: %w", err)
		}
	}
	if failed != nil {
		return executeFailed(p, failed, resp.Message)
	}
	if err := c.WriteOutputs(ctx, opts.Dir, p.command, r); err != nil {
		return err
	}
	if opts.Log != nil && resp.Message != "" {
		// REv2: a message for the user, also on success. Quoted: it is
		// the server's, and may hold terminal escapes.
		fmt.Fprintf(opts.Log, "paddock run: the server says: %q\n", resp.Message)
	}
	if opts.Log != nil {
		how := "executed"
		if res.Cached {
			how = "cache hit"
		}
		fmt.Fprintf(opts.Log, "paddock run: action %s: %s, exit code %d; uploaded %d of %d blobs (%d of %d bytes); %d compiler-reported files outside the root left to the remote side\n",
			p.action.Digest, how, res.ExitCode, res.Uploaded.MissingBlobs, res.Uploaded.Blobs, res.Uploaded.MissingBytes, res.Uploaded.Bytes, p.outside)
	}
	return nil
}

// prepared is an action ready to upload.
type prepared struct {
	action  client.Blob
	command *repb.Command // what the outputs written back are checked against
	blobs   []client.Blob // the input tree's, the Command and the Action
	outside int           // compiler-reported files left to the remote side
}

// prepare checks every path given, builds the input root (asking a
// compiler for its dependencies) and the Action. It uploads nothing.
func prepare(ctx context.Context, opts Options) (*prepared, error) {
	if len(opts.Args) == 0 {
		return nil, fmt.Errorf("no command to run")
	}
	in, err := NewInputs(opts.Root, opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, p := range opts.Inputs {
		if err := in.Check(p); err != nil {
			return nil, err
		}
	}
	outputs := append([]string(nil), opts.Outputs...)
	if IsCompile(opts.Args) && !opts.NoCompilerDeps && len(outputs) == 0 {
		outputs = append(outputs, CompileOutputs(opts.Args)...)
	}
	for _, p := range append(append([]string(nil), outputs...), opts.OutputDirs...) {
		if _, err := client.CleanPath(filepath.ToSlash(p)); err != nil {
			// The server would take one inside the input root, but they
			// are written back below the working directory only.
			return nil, fmt.Errorf("output %w: paddock run writes outputs below the working directory; run it from a directory above them", err)
		}
	}
	if IsCompile(opts.Args) && !opts.NoCompilerDeps {
		deps, err := CompilerDeps(ctx, opts.Dir, opts.Args)
		if err != nil {
			return nil, err
		}
		for _, d := range deps {
			if err := in.AddDependency(d); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range opts.Inputs {
		if err := in.Add(p); err != nil {
			return nil, err
		}
	}
	rootDigest, blobs := in.Tree().Build()
	action, command := client.ActionSpec{
		Arguments: opts.Args, Environment: opts.Environment, WorkingDirectory: in.WorkingDirectory(),
		OutputFiles: outputs, OutputDirectories: opts.OutputDirs, OutputNodeProperties: opts.OutputNodeProperties,
		Platform: opts.Platform, InputRoot: rootDigest, DoNotCache: opts.DoNotCache, Timeout: opts.Timeout,
	}.Build(opts.API)
	cmd := &repb.Command{}
	if err := proto.Unmarshal(command.Data, cmd); err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	return &prepared{action: action, command: cmd, blobs: append(blobs, command, action), outside: len(in.Outside)}, nil
}

// maxMissingRetries bounds how often a run uploads again after the farm
// answered that blobs it had just been sent are missing: a farm that keeps
// losing them (a CAS far too small for the action) ends the run with that
// answer instead of looping.
const maxMissingRetries = 2

// executeUploadingMissing executes p's action, and when the farm answers
// FAILED_PRECONDITION with MISSING violations that name blobs of p (the
// CAS evicted one between the upload and the execution, or found its
// stored copy corrupt and dropped it), uploads what is missing again and
// executes again, as the REv2 spec asks of a client and as Bazel does.
// What the uploads moved is added to res.Uploaded's Missing counts.
func executeUploadingMissing(ctx context.Context, c *client.Client, p *prepared, req *repb.ExecuteRequest, res *Result) (*repb.ExecuteResponse, error) {
	for retries := 0; ; retries++ {
		resp, err := c.Execute(ctx, req)
		if retries == maxMissingRetries || !missingOurs(p, err, resp) {
			return resp, err
		}
		up, err := c.Upload(ctx, p.blobs)
		// The same blobs were asked for: only what moved adds up.
		res.Uploaded.MissingBlobs += up.MissingBlobs
		res.Uploaded.MissingBytes += up.MissingBytes
		if err != nil {
			return nil, fmt.Errorf("upload again, after the farm found blobs missing: %w", err)
		}
	}
}

// missingOurs reports whether the execution failed only for blobs missing
// from the CAS (in the Execute call's error, or in the response's status)
// and at least one of them is one of p's, which an upload can mend.
func missingOurs(p *prepared, err error, resp *repb.ExecuteResponse) bool {
	st := status.Convert(err)
	if err == nil {
		st = status.FromProto(resp.GetStatus())
	}
	if st.Code() != codes.FailedPrecondition {
		return false
	}
	subjects, onlyMissing := rev2.MissingSubjects(st)
	if !onlyMissing {
		return false
	}
	for _, s := range subjects {
		for _, b := range p.blobs {
			if s == "blobs/"+b.Digest.String() {
				return true
			}
		}
	}
	return false
}
