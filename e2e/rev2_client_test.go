package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// client is the smallest REv2 client the tests need: it uploads blobs and
// protos with BatchUpdateBlobs, executes actions with Execution.Execute and
// reads results back. SHA-256 only.
type client struct {
	t    testing.TB
	cas  repb.ContentAddressableStorageClient
	bs   bytestream.ByteStreamClient
	exec repb.ExecutionClient
	// instance is the REv2 instance name of every call ("" by default).
	instance string
}

// newClient connects to a farm serving every REv2 service at addr.
func newClient(t testing.TB, addr string) *client {
	return newSplitClient(t, addr, addr)
}

// newSplitClient connects to storage and a scheduler at different
// addresses.
func newSplitClient(t testing.TB, storageAddr, schedulerAddr string) *client {
	t.Helper()
	storage := grpctest.Dial(t, storageAddr)
	sched := storage
	if schedulerAddr != storageAddr {
		sched = grpctest.Dial(t, schedulerAddr)
	}
	return &client{
		t:    t,
		cas:  repb.NewContentAddressableStorageClient(storage),
		bs:   bytestream.NewByteStreamClient(storage),
		exec: repb.NewExecutionClient(sched),
	}
}

// withT returns a copy of c that reports failures to t (a subtest).
func (c *client) withT(t testing.TB) *client {
	cc := *c
	cc.t = t
	return &cc
}

func digestOf(data []byte) *repb.Digest {
	sum := sha256.Sum256(data)
	return &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload stores blobs in the CAS and returns their digests. Blobs go in
// batches under gRPC's default 4 MiB message limit; a single blob must fit.
func (c *client) upload(ctx context.Context, blobs ...[]byte) []*repb.Digest {
	c.t.Helper()
	const maxBatch = 2 << 20
	var ds []*repb.Digest
	var small [][]byte
	for _, b := range blobs {
		if len(b) > maxBatch {
			ds = append(ds, c.write(ctx, b))
		} else {
			small = append(small, b)
		}
	}
	blobs = small
	for len(blobs) > 0 {
		req := &repb.BatchUpdateBlobsRequest{InstanceName: c.instance}
		size := 0
		for len(blobs) > 0 && (len(req.Requests) == 0 || size+len(blobs[0]) <= maxBatch) {
			d := digestOf(blobs[0])
			ds = append(ds, d)
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d, Data: blobs[0]})
			size += len(blobs[0])
			blobs = blobs[1:]
		}
		resp, err := c.cas.BatchUpdateBlobs(ctx, req)
		if err != nil {
			c.t.Fatalf("BatchUpdateBlobs: %v", err)
		}
		for _, r := range resp.Responses {
			if r.Status.GetCode() != 0 {
				c.t.Fatalf("BatchUpdateBlobs %s: %v", r.Digest.GetHash(), r.Status)
			}
		}
	}
	return ds
}

// write uploads one blob with ByteStream.Write, in 1 MiB chunks.
func (c *client) write(ctx context.Context, b []byte) *repb.Digest {
	c.t.Helper()
	d := digestOf(b)
	stream, err := c.bs.Write(ctx)
	if err != nil {
		c.t.Fatalf("ByteStream.Write: %v", err)
	}
	name := fmt.Sprintf("uploads/%d/blobs/%s/%d", time.Now().UnixNano(), d.Hash, d.SizeBytes)
	if c.instance != "" {
		name = c.instance + "/" + name
	}
	for off := 0; ; off += 1 << 20 {
		end := min(off+1<<20, len(b))
		req := &bytestream.WriteRequest{WriteOffset: int64(off), Data: b[off:end], FinishWrite: end == len(b)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // the status comes with CloseAndRecv
		}
		if end == len(b) {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		c.t.Fatalf("ByteStream.Write %s: %v", d.Hash, err)
	}
	return d
}

// read returns one blob from the CAS.
func (c *client) read(ctx context.Context, d *repb.Digest) []byte {
	c.t.Helper()
	if d.GetSizeBytes() == 0 {
		return nil
	}
	resp, err := c.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{InstanceName: c.instance, Digests: []*repb.Digest{d}})
	if err != nil {
		c.t.Fatalf("BatchReadBlobs %s: %v", d.Hash, err)
	}
	r := resp.Responses[0]
	if r.Status.GetCode() != 0 {
		c.t.Fatalf("BatchReadBlobs %s: %v", d.Hash, r.Status)
	}
	return r.Data
}

// inputFile is one file of an input root built by inputRoot.
type inputFile struct {
	data       []byte
	executable bool
}

// tree describes an input root: paths (slash-separated, relative) to files,
// and symlinks (path to target).
type tree struct {
	files    map[string]inputFile
	symlinks map[string]string
	dirs     []string // empty directories
}

// uploadTree uploads every file and Directory proto of tr and returns the
// root directory's digest.
func (c *client) uploadTree(ctx context.Context, tr tree) *repb.Digest {
	c.t.Helper()
	type node struct {
		dir      *repb.Directory
		children map[string]*node
	}
	newNode := func() *node { return &node{dir: &repb.Directory{}, children: map[string]*node{}} }
	root := newNode()
	walk := func(n *node, parts []string) *node {
		for _, p := range parts {
			child, ok := n.children[p]
			if !ok {
				child = newNode()
				n.children[p] = child
			}
			n = child
		}
		return n
	}
	split := func(p string) ([]string, string) {
		parts := splitPath(p)
		return parts[:len(parts)-1], parts[len(parts)-1]
	}
	var blobs [][]byte
	for p, f := range tr.files {
		dirs, name := split(p)
		n := walk(root, dirs)
		n.dir.Files = append(n.dir.Files, &repb.FileNode{Name: name, Digest: digestOf(f.data), IsExecutable: f.executable})
		blobs = append(blobs, f.data)
	}
	for p, target := range tr.symlinks {
		dirs, name := split(p)
		n := walk(root, dirs)
		n.dir.Symlinks = append(n.dir.Symlinks, &repb.SymlinkNode{Name: name, Target: target})
	}
	for _, p := range tr.dirs {
		walk(root, splitPath(p))
	}
	var finish func(n *node) *repb.Digest
	finish = func(n *node) *repb.Digest {
		for name, child := range n.children {
			n.dir.Directories = append(n.dir.Directories, &repb.DirectoryNode{Name: name, Digest: finish(child)})
		}
		sort.Slice(n.dir.Files, func(i, j int) bool { return n.dir.Files[i].Name < n.dir.Files[j].Name })
		sort.Slice(n.dir.Directories, func(i, j int) bool { return n.dir.Directories[i].Name < n.dir.Directories[j].Name })
		sort.Slice(n.dir.Symlinks, func(i, j int) bool { return n.dir.Symlinks[i].Name < n.dir.Symlinks[j].Name })
		b := marshal(c.t, n.dir)
		blobs = append(blobs, b)
		return digestOf(b)
	}
	d := finish(root)
	if len(blobs) > 0 {
		c.upload(ctx, blobs...)
	}
	return d
}

func splitPath(p string) []string {
	var parts []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > start {
				parts = append(parts, p[start:i])
			}
			start = i + 1
		}
	}
	return parts
}

// action is what prepare uploads: a Command and an Action over an input root.
type action struct {
	cmd        *repb.Command
	root       tree
	doNotCache bool
	timeout    time.Duration
	platform   []*repb.Platform_Property
}

// prepare uploads a's Command, input root and Action; it returns the
// Action's digest.
func (c *client) prepare(ctx context.Context, a action) *repb.Digest {
	c.t.Helper()
	if a.platform != nil {
		a.cmd.Platform = &repb.Platform{Properties: a.platform}
	}
	cmdBytes := marshal(c.t, a.cmd)
	root := c.uploadTree(ctx, a.root)
	act := &repb.Action{CommandDigest: digestOf(cmdBytes), InputRootDigest: root, DoNotCache: a.doNotCache}
	if a.platform != nil {
		act.Platform = &repb.Platform{Properties: a.platform}
	}
	if a.timeout > 0 {
		act.Timeout = durationpb.New(a.timeout)
	}
	actBytes := marshal(c.t, act)
	c.upload(ctx, cmdBytes, actBytes)
	return digestOf(actBytes)
}

// executeAsync runs execute (skipping the cache) in the background; its
// result arrives on the returned channel.
func (c *client) executeAsync(ctx context.Context, d *repb.Digest) <-chan execResult {
	done := make(chan execResult, 1)
	go func() {
		resp, err := c.execute(ctx, d, true)
		done <- execResult{resp, err}
	}()
	return done
}

// execute runs the action with Execution.Execute and returns the final
// ExecuteResponse. An error of the call itself is returned as is.
func (c *client) execute(ctx context.Context, d *repb.Digest, skipCache bool) (*repb.ExecuteResponse, error) {
	stream, err := c.exec.Execute(ctx, &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: d, SkipCacheLookup: skipCache})
	if err != nil {
		return nil, err
	}
	for {
		op, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if !op.Done {
			continue
		}
		return operationResponse(op)
	}
}

func operationResponse(op *longrunningpb.Operation) (*repb.ExecuteResponse, error) {
	if e := op.GetError(); e != nil {
		return nil, status.ErrorProto(e)
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		return nil, fmt.Errorf("operation %s response: %w", op.Name, err)
	}
	return resp, nil
}

// run prepares and executes a, and fails the test unless the execution
// completed with an OK status; it returns the ActionResult and its stdout
// and stderr.
func (c *client) run(ctx context.Context, a action) (*repb.ActionResult, string, string) {
	c.t.Helper()
	resp, err := c.execute(ctx, c.prepare(ctx, a), true)
	if err != nil {
		c.t.Fatalf("Execute %q: %v", a.cmd.Arguments, err)
	}
	if st := status.FromProto(resp.Status); st.Code() != codes.OK {
		c.t.Fatalf("Execute %q: status %v (%s)", a.cmd.Arguments, st, resp.Message)
	}
	return resp.Result, string(c.read(ctx, resp.Result.StdoutDigest)), string(c.read(ctx, resp.Result.StderrDigest))
}

// shell is a Command running script with /bin/sh -c in an environment with
// just PATH.
func shell(script string, outputs ...string) *repb.Command {
	return &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
		OutputPaths:          outputs,
	}
}
