package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
)

// Actions runs n unique trivial actions (salted, so none is a cache hit)
// and checks that each printed its own salt.
func (c *Client) Actions(ctx context.Context, n int) (*Report, error) {
	actions := make([]action, n)
	for i := range actions {
		salt := fmt.Sprintf("paddock-bench-%s-%d", c.run, i)
		a := c.newAction([]string{"/bin/echo", salt}, &repb.Directory{}, nil, nil)
		a.check = wantStdout(salt + "\n")
		actions[i] = a
	}
	return c.runActions(ctx, "actions", actions)
}

// inputTree builds an input root with files files of size bytes each, in
// subdirectories of at most 1,000 files. With fresh, the contents are
// random (so nothing is cached anywhere); otherwise they are the same for
// every call with the same shape.
func inputTree(files, size int, fresh bool) (*repb.Directory, []client.Blob) {
	root := &repb.Directory{}
	var blobs []client.Blob
	for start, d := 0, 0; start < files; start, d = start+1000, d+1 {
		dir := &repb.Directory{}
		for i := start; i < min(files, start+1000); i++ {
			data := make([]byte, size)
			if fresh {
				rand.Read(data)
			} else {
				copy(data, fmt.Sprintf("paddock bench input file %d of %d bytes\n", i, size))
			}
			b := client.NewBlob(data)
			blobs = append(blobs, b)
			dir.Files = append(dir.Files, &repb.FileNode{Name: fmt.Sprintf("f%06d", i), Digest: b.Digest.Proto()})
		}
		db := client.ProtoBlob(dir)
		blobs = append(blobs, db)
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%03d", d), Digest: db.Digest.Proto()})
	}
	return root, blobs
}

// Inputs runs n actions whose input root holds files files of size bytes,
// each counting its input files. Cold: every action has fresh blobs, so the
// worker fetches all of them. Warm: all actions share one set of blobs (new
// actions, same files), so the worker links them from its cache.
func (c *Client) Inputs(ctx context.Context, n, files, size int, cold bool) (*Report, error) {
	name := "inputs-warm"
	if cold {
		name = "inputs-cold"
	}
	var shared []client.Blob
	var sharedRoot *repb.Directory
	if !cold {
		sharedRoot, shared = inputTree(files, size, false)
	}
	actions := make([]action, n)
	for i := range actions {
		root, blobs := sharedRoot, shared
		if cold {
			root, blobs = inputTree(files, size, true)
		}
		salt := fmt.Sprintf("%s-%d", c.run, i)
		a := c.newAction([]string{"/bin/sh", "-c", "find . -type f | wc -l; : " + salt}, root, blobs, nil)
		a.check = wantStdout(strconv.Itoa(files) + "\n")
		actions[i] = a
	}
	if !cold && n > 0 {
		// Warm the worker's cache with one action outside the measurement.
		warm := c.newAction([]string{"/bin/sh", "-c", "find . -type f | wc -l; : warm-" + c.run}, sharedRoot, shared, nil)
		warm.check = wantStdout(strconv.Itoa(files) + "\n")
		if r, err := c.runActions(ctx, name+"-warmup", []action{warm}); err != nil || r.Errors > 0 {
			return r, fmt.Errorf("warm-up action: %v %s", err, r.FirstError)
		}
	}
	return c.runActions(ctx, name, actions)
}

// Outputs runs n actions that each write files files totalling bytes
// bytes into an output directory, and checks the Tree they report.
func (c *Client) Outputs(ctx context.Context, n, files int, bytes int64) (*Report, error) {
	size := max(1, bytes/int64(files))
	actions := make([]action, n)
	for i := range actions {
		salt := fmt.Sprintf("%s-%d", c.run, i)
		script := fmt.Sprintf("mkdir -p out && head -c %d /dev/urandom | split -a 6 -b %d - out/f && : %s", size*int64(files), size, salt)
		a := c.newAction([]string{"/bin/sh", "-c", script}, &repb.Directory{}, nil, []string{"out"})
		a.check = func(ctx context.Context, r *repb.ActionResult) error {
			if len(r.OutputDirectories) != 1 {
				return fmt.Errorf("%d output directories, want 1", len(r.OutputDirectories))
			}
			td, err := digest.FromProto(repb.DigestFunction_SHA256, r.OutputDirectories[0].TreeDigest, "tree_digest")
			if err != nil {
				return err
			}
			b, err := c.rc.Read(ctx, td)
			if err != nil {
				return err
			}
			tree := &repb.Tree{}
			if err := proto.Unmarshal(b, tree); err != nil {
				return err
			}
			got := len(tree.Root.GetFiles())
			for _, ch := range tree.Children {
				got += len(ch.Files)
			}
			if got != files {
				return fmt.Errorf("output tree has %d files, want %d", got, files)
			}
			return nil
		}
		actions[i] = a
	}
	return c.runActions(ctx, "outputs", actions)
}

// CAS uploads n fresh blobs of size bytes with ByteStream, downloads and
// verifies each, and then calls FindMissingBlobs with 10,000 digests
// (half present) findCalls times. It returns one report per phase.
func (c *Client) CAS(ctx context.Context, n int, size int, findCalls int) ([]*Report, error) {
	blobs := make([]client.Blob, n)
	for i := range blobs {
		data := make([]byte, size)
		rand.Read(data)
		blobs[i] = client.NewBlob(data)
	}
	// A fresh group per phase: a group's context ends with its Wait.
	// The upload and download phases are one loop (perBlob): each blob
	// is a sample of the phase's bytes, timed around op.
	group := func() (*errgroup.Group, context.Context) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.opts.Concurrency)
		return g, gctx
	}
	perBlob := func(scenario string, op func(ctx context.Context, b client.Blob) error) *Report {
		g, gctx := group()
		rec := c.newRecorder(scenario, n)
		for _, b := range blobs {
			g.Go(func() error {
				start := time.Now()
				if err := op(gctx, b); err != nil {
					rec.fail(err)
					return nil
				}
				rec.okBytes(time.Since(start), b.Digest.SizeBytes())
				return nil
			})
		}
		_ = g.Wait() // every task returns nil: failures are counted in rec
		return rec.report()
	}
	upRep := perBlob("cas-upload", c.rc.Write)
	downRep := perBlob("cas-download", func(ctx context.Context, b client.Blob) error {
		_, err := c.rc.Read(ctx, b.Digest)
		return err
	})
	req := &repb.FindMissingBlobsRequest{InstanceName: c.opts.Instance}
	for i := range 10000 {
		if i%2 == 0 && i/2 < len(blobs) {
			req.BlobDigests = append(req.BlobDigests, blobs[i/2].Digest.Proto())
		} else {
			req.BlobDigests = append(req.BlobDigests, client.NewBlob([]byte(fmt.Sprintf("absent %s %d", c.run, i))).Digest.Proto())
		}
	}
	g, gctx := group()
	find := c.newRecorder("cas-findmissing", findCalls)
	for range findCalls {
		g.Go(func() error {
			start := time.Now()
			resp, err := c.rc.CAS().FindMissingBlobs(c.rc.Context(gctx), req)
			if err != nil {
				find.fail(err)
				return nil
			}
			if want := 10000 - min(n, 5000); len(resp.MissingBlobDigests) != want {
				find.fail(fmt.Errorf("FindMissingBlobs reported %d missing, want %d", len(resp.MissingBlobDigests), want))
				return nil
			}
			find.ok(time.Since(start), nil)
			return nil
		})
	}
	_ = g.Wait() // every task returns nil: failures are counted in find
	return []*Report{upRep, downRep, find.report()}, ctx.Err()
}

// Cached stores a result naming files output files for one action in the
// action cache (UpdateActionResult: the farm must let this client write
// it) and executes that action n times, each answered from the cache. A
// completed operation keeps its response for a while (the scheduler's
// completed_retention, bounded together by max_completed_bytes), so with
// a FarmPID the report's FarmPeakRSSBytes shows what large cached results
// cost the farm's memory.
func (c *Client) Cached(ctx context.Context, n, files int) (*Report, error) {
	a := c.newAction([]string{"/bin/echo", "paddock-bench-cached-" + c.run}, &repb.Directory{}, nil, nil)
	one := client.NewBlob([]byte("paddock-bench output"))
	a.blobs = append(a.blobs, one)
	if err := c.upload(ctx, a.blobs); err != nil {
		return nil, fmt.Errorf("cached: upload: %w", err)
	}
	res := &repb.ActionResult{}
	for i := range files {
		res.OutputFiles = append(res.OutputFiles, &repb.OutputFile{Path: fmt.Sprintf("out/cached/file-%06d.o", i), Digest: one.Digest.Proto()})
	}
	_, err := c.rc.ActionCache().UpdateActionResult(c.rc.Context(ctx), &repb.UpdateActionResultRequest{
		InstanceName: c.opts.Instance, ActionDigest: a.digest.Proto(), ActionResult: res})
	if err != nil {
		return nil, fmt.Errorf("cached: store the result: %w", err)
	}
	hits := make([]action, n)
	for i := range hits {
		hits[i] = action{digest: a.digest, check: func(_ context.Context, r *repb.ActionResult) error {
			if len(r.OutputFiles) != files {
				return fmt.Errorf("%d output files, want the cached result's %d", len(r.OutputFiles), files)
			}
			return nil
		}}
	}
	return c.runActions(ctx, "cached", hits)
}
