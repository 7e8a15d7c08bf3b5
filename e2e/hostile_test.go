package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/rev2"
)

// Hostile input through a real `paddock up`: each case asserts the status,
// that the message names no host path, that nothing was cached, and that
// the farm then runs the next action normally.

// checkRefused checks an Execute error: its code, a message free of the
// farm's host paths, and bounded in size.
func checkRefused(t *testing.T, f *farm, err error, code codes.Code, want string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), want) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, want)
	}
	if strings.Contains(st.Message(), f.data) || strings.Contains(st.Message(), "/tmp/") {
		t.Errorf("the message names a host path: %q", st.Message())
	}
	if len(st.Message()) > 2000 {
		t.Errorf("the message is %d bytes long", len(st.Message()))
	}
	return st
}

func checkNotCached(t *testing.T, f *farm, d *repb.Digest) {
	t.Helper()
	ac := repb.NewActionCacheClient(grpctest.Dial(t, f.addr))
	if r, err := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
		t.Errorf("the action cache has %v (%v), want NOT_FOUND", r, err)
	}
}

// checkFarmWorks runs a plain action to the end.
func checkFarmWorks(t *testing.T, c *client, salt string) {
	t.Helper()
	if _, out, _ := c.run(t.Context(), action{cmd: shell("echo fine " + salt)}); out != "fine "+salt+"\n" {
		t.Fatalf("the next action's stdout %q", out)
	}
}

// TestCorruptInputIsCaughtBeforeUse: a CAS file damaged at rest (one byte
// flipped, or truncated) after it was uploaded and used is caught before
// an action reads it: Execute answers FAILED_PRECONDITION with a MISSING
// violation for the blob (Bazel then uploads it again), nothing is cached,
// and after the upload the action sees the right bytes. The same for the
// Action and the Command, which the scheduler reads: before, their damage
// failed Execute with DATA_LOSS, which Bazel does not retry, though the
// store had removed the blob and an upload would have mended it.
func TestCorruptInputIsCaughtBeforeUse(t *testing.T) {
	f, c := startUpClient(t)
	ctx := t.Context()
	edits := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[3] ^= 0x01; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
	}
	for i, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			c := c.withT(t)
			content := []byte(fmt.Sprintf("the true content of input %d\n", i))
			root := tree{files: map[string]inputFile{"in.txt": {data: content}}}
			if _, out, _ := c.run(ctx, action{cmd: shell("cat in.txt; echo first"), root: root}); out != string(content)+"first\n" {
				t.Fatalf("first run's stdout %q", out)
			}
			damageStored(t, f, digestOf(content), tc.edit)
			d := c.prepare(ctx, action{cmd: shell("cat in.txt; echo second"), root: root})
			// prepare uploaded the tree again, but the CAS still indexes
			// the damaged file, so the upload was skipped as present.
			resp := checkDamagedIsMissing(t, f, c, d, content)
			if out := string(c.read(ctx, resp.Result.StdoutDigest)); out != string(content)+"second\n" {
				t.Fatalf("after the upload the action read %q", out)
			}
		})
	}
	for i, tc := range edits {
		for _, which := range []string{"action", "command"} {
			t.Run(which+" "+tc.name, func(t *testing.T) {
				c := c.withT(t)
				d := c.prepare(ctx, action{cmd: shell(fmt.Sprintf("echo %s %d", which, i))})
				act := &repb.Action{}
				actBytes := c.read(ctx, d)
				if err := proto.Unmarshal(actBytes, act); err != nil {
					t.Fatal(err)
				}
				blob, data := d, actBytes
				if which == "command" {
					blob, data = act.CommandDigest, c.read(ctx, act.CommandDigest)
				}
				damageStored(t, f, blob, tc.edit)
				checkDamagedIsMissing(t, f, c, d, data)
			})
		}
	}
}

// damageStored edits the file of the stored blob d in the farm's disk CAS.
func damageStored(t *testing.T, f *farm, d *repb.Digest, edit func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(f.data, "storage", "cas", "sha256", d.Hash[:2], d.Hash)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edit(b), 0o444); err != nil {
		t.Fatal(err)
	}
}

// checkDamagedIsMissing executes the action d, one of whose blobs, data,
// is damaged at rest: the answer is FAILED_PRECONDITION with data's blob
// MISSING, nothing is cached, and once the client has uploaded data
// again, as Bazel does, the action runs: its response is returned.
func checkDamagedIsMissing(t *testing.T, f *farm, c *client, d *repb.Digest, data []byte) *repb.ExecuteResponse {
	t.Helper()
	ctx := t.Context()
	resp, err := c.execute(ctx, d, true)
	if err == nil {
		err = status.ErrorProto(resp.Status)
	}
	h := digestOf(data).Hash
	st := checkRefused(t, f, err, codes.FailedPrecondition, h)
	found := false
	subjects, _ := rev2.MissingSubjects(st)
	for _, s := range subjects {
		found = found || strings.Contains(s, h)
	}
	if !found {
		t.Errorf("no MISSING violation for the damaged blob in %v", st.Details())
	}
	checkNotCached(t, f, d)
	c.upload(ctx, data)
	resp, err = c.execute(ctx, d, true)
	if err != nil || status.FromProto(resp.Status).Code() != codes.OK {
		t.Fatalf("after the upload: %v %v", err, resp.GetStatus())
	}
	return resp
}

// TestDeepOutputThenRestart: an action leaves a 100,000-deep directory as
// its output. It fails naming the depth (INVALID_ARGUMENT from the worker's
// max_output_depth; or RESOURCE_EXHAUSTED from the runner's disk guard,
// which cannot count a tree that deep, when its walk comes first) and is
// not cached, and the farm runs the next action. Killed at once (the tree
// still in its build directories), the farm restarts on the same data,
// comes up and runs actions, and removes the tree in the background.
func TestDeepOutputThenRestart(t *testing.T) {
	f, c := startUpClient(t)
	ctx := t.Context()
	cmd := &repb.Command{
		Arguments:   []string{"/usr/bin/perl", "-e", `mkdir "out" or die; chdir "out" or die; for (1..100000) { mkdir "d" or die "$_: $!"; chdir "d" or die "$_: $!" }`},
		OutputPaths: []string{"out"},
	}
	d := c.prepare(ctx, action{cmd: cmd})
	resp, err := c.execute(ctx, d, true)
	if err == nil {
		err = status.ErrorProto(resp.Status)
	}
	if status.Code(err) == codes.ResourceExhausted {
		checkRefused(t, f, err, codes.ResourceExhausted, "nested deeper than")
	} else {
		checkRefused(t, f, err, codes.InvalidArgument, "max_output_depth")
	}
	checkNotCached(t, f, d)
	checkFarmWorks(t, c, "after the deep output")

	f.kill()
	f2 := startUp(t, f.data)
	checkFarmWorks(t, newClient(t, f2.addr), "after the restart")
	trashDir := filepath.Join(f.data, "worker", "builds.trash")
	waitFor(t, "the trash emptied", 5*time.Minute, func() bool {
		entries, err := os.ReadDir(trashDir)
		return err == nil && len(entries) == 0
	})
	f2.shutdown()
}

// TestHostileTreesAndCommands: input trees and commands a client should
// never send are refused with INVALID_ARGUMENT naming what is wrong, and
// nothing is cached; the farm goes on.
func TestHostileTreesAndCommands(t *testing.T) {
	f, c := startUpClient(t, "--max-output-bytes", "1GiB")
	ctx := t.Context()
	file := []byte("x")
	c.upload(ctx, file)
	fileNode := func(name string) *repb.FileNode { return &repb.FileNode{Name: name, Digest: digestOf(file)} }
	put := func(m *repb.Directory) *repb.Digest {
		b := marshal(t, m)
		c.upload(ctx, b)
		return digestOf(b)
	}
	bomb := &repb.Directory{Files: []*repb.FileNode{fileNode("a"), fileNode("b")}}
	for range 30 {
		sub := put(bomb)
		bomb = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub}, {Name: "b", Digest: sub}}}
	}
	withRoot := func(root *repb.Directory, cmd *repb.Command) *repb.Digest {
		cb := marshal(t, cmd)
		ab := marshal(t, &repb.Action{CommandDigest: digestOf(cb), InputRootDigest: put(root)})
		c.upload(ctx, cb, ab)
		return digestOf(ab)
	}
	plain := shell("true")
	for _, tc := range []struct {
		name   string
		action *repb.Digest
		want   string
	}{
		{"Merkle bomb", withRoot(bomb, plain), "max_input_files"},
		{"duplicate names", withRoot(&repb.Directory{Files: []*repb.FileNode{fileNode("a"), fileNode("a")}}, plain), `file "a": the name is used twice`},
		{"unsorted entries", withRoot(&repb.Directory{Files: []*repb.FileNode{fileNode("b"), fileNode("a")}}, plain), `file "a": comes after "b"`},
		{"absolute symlink", withRoot(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "/etc/shadow"}}}, plain), "DISALLOWED"},
		{"8 MiB argv", withRoot(&repb.Directory{}, &repb.Command{Arguments: []string{"/bin/echo", strings.Repeat("x", 100<<10), strings.Repeat("y", 8<<20)}}), "command.arguments"},
		{"3 GiB sparse output", withRoot(&repb.Directory{}, shell("truncate -s 3G big", "big")), "max_output_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.withT(t)
			resp, err := c.execute(ctx, tc.action, true)
			if err == nil {
				err = status.ErrorProto(resp.Status)
			}
			checkRefused(t, f, err, codes.InvalidArgument, tc.want)
			checkNotCached(t, f, tc.action)
		})
	}
	checkFarmWorks(t, c, "after the hostile input")
}

// TestFullDiskSeenByAnotherClient: with the farm's disk full (filled from
// outside, as another tenant of the disk would), a client's upload that
// evicting the whole CAS would not make room for is refused with
// RESOURCE_EXHAUSTED, per blob, naming no host path; once space is back,
// the farm runs the next action normally.
func TestFullDiskSeenByAnotherClient(t *testing.T) {
	needPaddock(t)
	dir := testdisk.MountAt(t, filepath.Join(searchableTempDir(t), "disk"), 96<<20, 0)
	f := startUp(t, filepath.Join(dir, "data"))
	c := newClient(t, f.addr)
	ctx := t.Context()
	checkFarmWorks(t, c, "before the disk fills")

	filler := filepath.Join(dir, "filler")
	fill, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := fill.Write(chunk); err != nil {
			break // ENOSPC: full
		}
	}
	fill.Close()

	other := newClient(t, f.addr)
	// Larger than all the farm's CAS holds, which it evicts to make room.
	blob := append([]byte("a blob from another client, with the disk full: "+dir), make([]byte, 1<<20)...)
	resp, err := other.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: digestOf(blob), Data: blob}}})
	if err != nil {
		t.Fatalf("BatchUpdateBlobs with the disk full: %v, want a per-blob status", err)
	}
	st := status.FromProto(resp.Responses[0].Status)
	checkRefused(t, f, st.Err(), codes.ResourceExhausted, "full")
	if strings.Contains(st.Message(), dir) {
		t.Errorf("the message names the data directory: %q", st.Message())
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	checkFarmWorks(t, other, "after space is back")
	f.shutdown()
}
