package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/worker"

	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const sha256 = repb.DigestFunction_SHA256

type harness struct {
	t      *testing.T
	dir    string
	cas    *storage.DiskBlobStore
	ac     *storage.MemoryActionCache
	files  *worker.FileCache
	runner *farmtest.ExecRunner
	w      *worker.Worker
}

func newHarness(t *testing.T) *harness { t.Helper(); return newHarnessCAS(t, 0) }

// newHarnessCAS is newHarness with a CAS of casBytes (0: unbounded).
func newHarnessCAS(t *testing.T, casBytes int64) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), ac: storage.NewMemoryActionCache(), runner: &farmtest.ExecRunner{}}
	var err error
	if h.cas, err = storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(h.dir, "cas"), MaxBytes: casBytes}); err != nil {
		t.Fatal(err)
	}
	if h.files, err = worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(h.dir, "files"), CAS: h.cas, Local: h.cas}); err != nil {
		t.Fatal(err)
	}
	h.w, err = worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, BuildDir: filepath.Join(h.dir, "builds"),
		CASBytes: storage.DiskMaxBlobBytes(casBytes),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) put(data []byte) digest.Digest { return h.putTo(h.cas, data) }

func (h *harness) putTo(cas storage.BlobStore, data []byte) digest.Digest {
	return putBlob(h.t, cas, data)
}

// putBlob stores data in cas under its SHA-256 digest.
func putBlob(t testing.TB, cas storage.BlobStore, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(sha256, data)
	if err := cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *harness) putProto(m proto.Message) digest.Digest {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return h.put(b)
}

// action stores cmd and an Action over root and returns an assignment.
func (h *harness) action(cmd *repb.Command, root *repb.Directory, doNotCache bool) *workerpb.Assignment {
	cd := h.putProto(cmd)
	rd := h.putProto(root)
	ad := h.putProto(&repb.Action{CommandDigest: cd.Proto(), InputRootDigest: rd.Proto(), DoNotCache: doNotCache})
	return &workerpb.Assignment{
		OperationName: "operations/test-" + ad.Hash()[:8], InstanceName: "main", DigestFunction: int32(sha256),
		ActionDigest: &workerpb.Digest{Hash: ad.Hash(), SizeBytes: ad.SizeBytes()},
	}
}

func actionDigest(a *workerpb.Assignment) digest.Digest {
	d, _ := digest.New(sha256, a.ActionDigest.Hash, a.ActionDigest.SizeBytes)
	return d
}

// sh is a command running script, with outputs sorted as REv2 requires.
func sh(script string, outputs ...string) *repb.Command {
	outputs = slices.Clone(outputs)
	slices.Sort(outputs)
	return &repb.Command{Arguments: []string{"/bin/sh", "-c", script}, OutputPaths: outputs,
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}}
}

func (h *harness) read(d *repb.Digest) []byte {
	dd, err := digest.FromProto(sha256, d, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := storagetest.ReadAll(h.t, h.cas, dd, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func ok(t *testing.T, resp *repb.ExecuteResponse) *repb.ActionResult {
	t.Helper()
	if resp.Status.GetCode() != 0 {
		t.Fatalf("ExecuteResponse status %v", resp.Status)
	}
	return resp.Result
}

func TestInputRootIsHardLinkedAndReadOnly(t *testing.T) {
	h := newHarness(t)
	data := h.put([]byte("input data\n"))
	tool := h.put([]byte("#!/bin/sh\necho tool ran\n"))
	sub := h.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "tool.sh", Digest: tool.Proto(), IsExecutable: true}}})
	root := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "data.txt", Digest: data.Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "bin", Digest: sub.Proto()}},
		Symlinks:    []*repb.SymlinkNode{{Name: "link", Target: "data.txt"}},
	}
	var inodes []uint64
	var modes []os.FileMode
	h.runner.Before = func(r string) {
		for _, p := range []string{"data.txt", "bin/tool.sh"} {
			info, err := os.Lstat(filepath.Join(r, p))
			if err != nil {
				t.Fatal(err)
			}
			inodes = append(inodes, info.Sys().(*syscall.Stat_t).Ino)
			modes = append(modes, info.Mode().Perm())
		}
	}
	a := h.action(sh("cat link; ./bin/tool.sh > out.txt", "out.txt"), root, false)
	res := ok(t, h.w.Execute(context.Background(), a))
	if got := string(h.read(res.StdoutDigest)); got != "input data\n" {
		t.Fatalf("stdout %q", got)
	}
	if len(res.OutputFiles) != 1 || string(h.read(res.OutputFiles[0].Digest)) != "tool ran\n" {
		t.Fatalf("outputs %v", res.OutputFiles)
	}
	casPath, _ := h.cas.Path(data)
	casInfo, _ := os.Stat(casPath)
	if inodes[0] != casInfo.Sys().(*syscall.Stat_t).Ino {
		t.Error("non-executable input is not a hard link of the CAS file")
	}
	if modes[0] != 0o444 || modes[1] != 0o555 {
		t.Errorf("input modes %v, want 0444 and 0555", modes)
	}
	if _, files := h.files.Stats(); files != 1 {
		t.Errorf("file cache holds %d files, want 1 (the executable copy)", files)
	}
}

// TestInputsLargerThanTheCASAreResourceExhausted: an input root whose
// distinct files are more than the CAS holds, some missing, is
// RESOURCE_EXHAUSTED saying so: each upload of what is missing evicted
// what was there, and a client following the spec (upload what is
// MISSING, Execute again) was told MISSING for good. One that fits is
// still MISSING.
func TestInputsLargerThanTheCASAreResourceExhausted(t *testing.T) {
	h := newHarnessCAS(t, 64<<10)
	present := h.put(bytes.Repeat([]byte{'p'}, 40<<10))
	absent := digest.FromBytes(sha256, bytes.Repeat([]byte{'a'}, 40<<10))
	small := digest.FromBytes(sha256, []byte("never uploaded"))
	for _, c := range []struct {
		absent digest.Digest
		want   codes.Code
	}{{absent, codes.ResourceExhausted}, {small, codes.FailedPrecondition}} {
		root := &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: c.absent.Proto()}, {Name: "p", Digest: present.Proto()}}}
		resp := h.w.Execute(context.Background(), h.action(sh("true"), root, false))
		st := status.FromProto(resp.Status)
		if st.Code() != c.want || (c.want == codes.ResourceExhausted && !strings.Contains(st.Message(), "storage.max_bytes")) {
			t.Errorf("inputs of %d bytes in a CAS of 64 KiB: %v, want %v", c.absent.SizeBytes()+present.SizeBytes(), st, c.want)
		}
	}
	if h.runner.Calls() != 0 {
		t.Fatal("the command ran without its inputs")
	}
}

func TestMissingInputsAreFailedPreconditionMissing(t *testing.T) {
	h := newHarness(t)
	absent := digest.FromBytes(sha256, []byte("never uploaded"))
	absentDir := digest.FromBytes(sha256, []byte("no such directory"))
	root := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "a", Digest: absent.Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "d", Digest: absentDir.Proto()}},
	}
	resp := h.w.Execute(context.Background(), h.action(sh("true"), root, false))
	st := status.FromProto(resp.Status)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("status %v, want FAILED_PRECONDITION", st)
	}
	subjects, onlyMissing := rev2.MissingSubjects(st)
	if !onlyMissing {
		t.Errorf("violations other than MISSING in %v", st.Details())
	}
	want := map[string]bool{"blobs/" + absent.String(): true, "blobs/" + absentDir.String(): true}
	if len(subjects) != 2 || !want[subjects[0]] || !want[subjects[1]] {
		t.Fatalf("violations %v, want both missing blobs", subjects)
	}
	if h.runner.Calls() != 0 {
		t.Fatal("the command ran without its inputs")
	}
}

func TestOutputsOfEveryKind(t *testing.T) {
	h := newHarness(t)
	script := `mkdir -p out/d/sub && echo f > out/file && echo x > out/exe && chmod +x out/exe &&
echo a > out/d/a && echo b > out/d/sub/b && ln -s a out/d/rel && ln -s ../../../../etc out/d/escape &&
ln -s file out/link && echo err >&2`
	a := h.action(sh(script, "out/file", "out/exe", "out/d", "out/link", "out/never"), &repb.Directory{}, false)
	res := ok(t, h.w.Execute(context.Background(), a))
	files := map[string]*repb.OutputFile{}
	for _, f := range res.OutputFiles {
		files[f.Path] = f
	}
	if string(h.read(files["out/file"].Digest)) != "f\n" || files["out/file"].IsExecutable {
		t.Errorf("out/file: %v", files["out/file"])
	}
	if !files["out/exe"].GetIsExecutable() {
		t.Errorf("out/exe not executable: %v", files["out/exe"])
	}
	if len(res.OutputSymlinks) != 1 || res.OutputSymlinks[0].Target != "file" {
		t.Errorf("symlinks %v", res.OutputSymlinks)
	}
	if len(res.OutputDirectories) != 1 {
		t.Fatalf("directories %v", res.OutputDirectories)
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal(h.read(res.OutputDirectories[0].TreeDigest), tree); err != nil {
		t.Fatal(err)
	}
	r := tree.Root
	if len(r.Files) != 1 || r.Files[0].Name != "a" || len(r.Directories) != 1 || len(r.Symlinks) != 2 || len(tree.Children) != 1 {
		t.Fatalf("tree root %v, children %d", r, len(tree.Children))
	}
	// The escaping symlink is recorded as a string, never followed.
	if r.Symlinks[0].Name != "escape" || r.Symlinks[0].Target != "../../../../etc" {
		t.Errorf("escaping symlink recorded as %v", r.Symlinks[0])
	}
	if string(h.read(tree.Children[0].Files[0].Digest)) != "b\n" {
		t.Error("nested file content wrong")
	}
	if string(h.read(res.StderrDigest)) != "err\n" {
		t.Error("stderr not uploaded")
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); err != nil {
		t.Errorf("successful action not cached: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(h.dir, "builds")); len(entries) != 0 {
		t.Errorf("build directory not cleaned: %v", entries)
	}
}

func TestLegacyOutputsAndParents(t *testing.T) {
	h := newHarness(t)
	// REv2 2.0: output_files and output_directories; the parents must
	// exist before the command runs (it does not create them).
	cmd := &repb.Command{
		Arguments:         []string{"/bin/sh", "-c", "echo hi > a/b/f && mkdir c/d && ln -s f a/b/l"},
		WorkingDirectory:  "wd",
		OutputFiles:       []string{"a/b/f", "a/b/l"},
		OutputDirectories: []string{"c/d"},
	}
	res := ok(t, h.w.Execute(context.Background(), h.action(cmd, &repb.Directory{}, false)))
	if res.ExitCode != 0 || len(res.OutputFiles) != 1 || res.OutputFiles[0].Path != "a/b/f" {
		t.Fatalf("result %v", res)
	}
	if len(res.OutputFileSymlinks) != 1 || len(res.OutputDirectories) != 1 || res.OutputDirectories[0].Path != "c/d" {
		t.Fatalf("legacy symlinks %v, directories %v", res.OutputFileSymlinks, res.OutputDirectories)
	}
}

func TestAbsoluteOutputSymlinkRefused(t *testing.T) {
	h := newHarness(t)
	resp := h.w.Execute(context.Background(), h.action(sh("ln -s /etc/passwd out", "out"), &repb.Directory{}, false))
	st := status.FromProto(resp.Status)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `"out"`) {
		t.Fatalf("status %v, want FAILED_PRECONDITION naming the output", st)
	}
}

func TestSymlinkInInputRootCannotRedirectOutputs(t *testing.T) {
	h := newHarness(t)
	outside := filepath.Join(h.dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The build directory is h.dir/builds/<action>/root: ../../../outside
	// leads out of it.
	root := &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "link", Target: "../../../outside"}}}
	a := h.action(sh("true", "link/x", "link/secret"), root, false)
	res := ok(t, h.w.Execute(context.Background(), a))
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("something was created outside the input root: %v", entries)
	}
	if len(res.OutputFiles)+len(res.OutputDirectories)+len(res.OutputSymlinks) != 0 {
		t.Fatalf("an output was collected through a symlink: %v", res)
	}
	// And a symlink the action swaps in for a declared output is recorded
	// as a symlink: the host file's bytes never reach the CAS.
	a = h.action(sh("ln -s "+filepath.Join(outside, "secret")+" stolen", "stolen"), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), a)
	if status.FromProto(resp.Status).Code() != codes.FailedPrecondition {
		t.Fatalf("absolute symlink output: %v", resp.Status)
	}
	if m, _ := h.cas.FindMissing(context.Background(), []digest.Digest{digest.FromBytes(sha256, []byte("host file"))}); len(m) != 1 {
		t.Fatal("the host file's bytes reached the CAS")
	}
}

func TestFailedAndUncacheableActionsAreNotCached(t *testing.T) {
	h := newHarness(t)
	fail := h.action(sh("exit 3"), &repb.Directory{}, false)
	res := ok(t, h.w.Execute(context.Background(), fail))
	if res.ExitCode != 3 {
		t.Fatalf("exit code %d, want 3", res.ExitCode)
	}
	noCache := h.action(sh("echo x"), &repb.Directory{}, true)
	ok(t, h.w.Execute(context.Background(), noCache))
	for _, a := range []*workerpb.Assignment{fail, noCache} {
		if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
			t.Errorf("action %s cached: %v", a.OperationName, err)
		}
	}
}

func TestDuplicateInputNamesAreInvalidArgument(t *testing.T) {
	h := newHarness(t)
	sub := h.putProto(&repb.Directory{})
	root := &repb.Directory{
		Directories: []*repb.DirectoryNode{{Name: "x", Digest: sub.Proto()}},
		Symlinks:    []*repb.SymlinkNode{{Name: "x", Target: "y"}},
	}
	resp := h.w.Execute(context.Background(), h.action(sh("true"), root, false))
	st := status.FromProto(resp.Status)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `"x"`) {
		t.Fatalf("status %v, want INVALID_ARGUMENT naming x", st)
	}
}

func TestTruncatedOutputIsNotCached(t *testing.T) {
	h := newHarness(t)
	h.runner.Truncated = true
	a := h.action(sh("echo lots"), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), a)
	ok(t, resp)
	if !strings.Contains(resp.Message, "cut short") {
		t.Errorf("message %q does not say the output was truncated", resp.Message)
	}
	// Clients show the message only for failures: the output says it too.
	if out := string(h.read(resp.Result.StdoutDigest)); !strings.HasPrefix(out, "lots\n") || !strings.HasSuffix(out, "[paddock: stdout cut short here: the command wrote more than the worker's output cap (the runner's sandbox.output_limit), or the worker's disk was full]\n") {
		t.Errorf("stdout %q does not end by saying it was truncated", out)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
		t.Fatalf("a result with truncated output was cached: %v", err)
	}
}

// TestOutputAtTheFileSizeLimitIsNotCached: a child of the command killed
// by SIGXFSZ leaves its file cut at the file size limit while the command
// exits 0. An output that reached the limit the runner reports is named
// in the message and the result is not cached; one byte below, it is.
func TestOutputAtTheFileSizeLimitIsNotCached(t *testing.T) {
	h := newHarness(t)
	h.runner.After = func(r *runnerpb.RunResponse) { r.FileSizeLimitBytes = 4096 }
	cut := h.action(sh("head -c 4096 /dev/zero > d/out; exit 0", "d/out"), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), cut)
	ok(t, resp)
	if !strings.Contains(resp.Message, `output "d/out" reached the file size limit of 4096 bytes`) || !strings.Contains(resp.Message, "not cached") {
		t.Errorf("message %q does not name the output at the limit", resp.Message)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(cut)); status.Code(err) != codes.NotFound {
		t.Fatalf("a result whose output may have been cut was cached: %v", err)
	}
	whole := h.action(sh("head -c 4095 /dev/zero > d/out; exit 0", "d/out"), &repb.Directory{}, false)
	if resp := h.w.Execute(context.Background(), whole); resp.Message != "" {
		t.Errorf("below the limit: message %q", resp.Message)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(whole)); err != nil {
		t.Fatalf("a result below the limit was not cached: %v", err)
	}
}

func TestRunnerFailureIsRetryable(t *testing.T) {
	h := newHarness(t)
	h.runner.Err = errors.New("connection refused")
	resp := h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, false))
	if status.FromProto(resp.Status).Code() != codes.Unavailable {
		t.Fatalf("status %v, want UNAVAILABLE", resp.Status)
	}
}

func TestExecutedActionMetadata(t *testing.T) {
	h := newHarness(t)
	res := ok(t, h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, false)))
	md := res.ExecutionMetadata
	if md.Worker != "w1" {
		t.Errorf("worker %q", md.Worker)
	}
	order := []string{"worker_start", "input_fetch_start", "input_fetch_completed", "execution_start", "execution_completed", "output_upload_start", "output_upload_completed", "worker_completed"}
	stamps := []*timestamppb.Timestamp{md.WorkerStartTimestamp, md.InputFetchStartTimestamp, md.InputFetchCompletedTimestamp, md.ExecutionStartTimestamp, md.ExecutionCompletedTimestamp, md.OutputUploadStartTimestamp, md.OutputUploadCompletedTimestamp, md.WorkerCompletedTimestamp}
	for i, s := range stamps {
		if s.GetSeconds() == 0 {
			t.Errorf("%s timestamp not set", order[i])
		}
	}
	if md.WorkerCompletedTimestamp.AsTime().Before(md.WorkerStartTimestamp.AsTime()) {
		t.Error("timestamps out of order")
	}
}

// TestSandboxOutcomesAreReportedAndNotCached: an OOM kill or a pids-limit
// hit anywhere in the sandbox is in the response's message and, as flags,
// in the auxiliary metadata, and the result is not cached even when the
// command exited 0; a sandbox killed outright never answers exit code -1.
func TestSandboxOutcomesAreReportedAndNotCached(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    func(*runnerpb.RunResponse)
		exitCode int32
		message  string
		flag     string
	}{
		{"partial OOM, exit 0", func(r *runnerpb.RunResponse) { r.OomKilled = true }, 0, "out of memory", "oom_killed"},
		{"whole-sandbox OOM", func(r *runnerpb.RunResponse) { r.OomKilled, r.ExitCode, r.Signal = true, -1, 9 }, 137, "out of memory", "oom_killed"},
		{"pids limit, exit 0", func(r *runnerpb.RunResponse) { r.PidsLimitHit = true }, 0, "limit on processes", "pids_limit_hit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.runner.After = tc.after
			a := h.action(sh("true"), &repb.Directory{}, false)
			resp := h.w.Execute(context.Background(), a)
			res := ok(t, resp)
			if res.ExitCode != tc.exitCode {
				t.Errorf("exit code %d, want %d", res.ExitCode, tc.exitCode)
			}
			if !strings.Contains(resp.Message, tc.message) || !strings.Contains(resp.Message, "not cached") {
				t.Errorf("message %q, want it to say %q and that the result was not cached", resp.Message, tc.message)
			}
			found := false
			for _, a := range res.ExecutionMetadata.AuxiliaryMetadata {
				s := &structpb.Struct{}
				if a.UnmarshalTo(s) == nil && s.Fields[tc.flag].GetBoolValue() {
					found = true
				}
			}
			if !found {
				t.Errorf("auxiliary metadata %v has no %s=true", res.ExecutionMetadata.AuxiliaryMetadata, tc.flag)
			}
			if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
				t.Fatalf("the result was cached: %v", err)
			}
		})
	}
}

// TestTimeoutSaidOnce: a timed-out action's status says so with the
// runner's words; the response's message, which clients print after it,
// only adds that the result was not cached.
func TestTimeoutSaidOnce(t *testing.T) {
	h := newHarness(t)
	h.runner.After = func(r *runnerpb.RunResponse) {
		r.StatusCode, r.StatusMessage, r.TimedOut = int32(codes.DeadlineExceeded), "the action timed out after 2s and was terminated", true
	}
	resp := h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, false))
	st := status.FromProto(resp.Status)
	if st.Code() != codes.DeadlineExceeded || strings.Count(st.Message()+" "+resp.Message, "timed out") != 1 || resp.Message != "the result was not cached" {
		t.Errorf("status %v, message %q; want the timeout said once, and that nothing was cached", st, resp.Message)
	}
}

// countingStep is an extra step: it sees every action and its outcome.
type countingStep struct {
	next  worker.Executor
	exits []int32
}

func (s *countingStep) Execute(ctx context.Context, j *worker.Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err == nil && resp.Result != nil {
		s.exits = append(s.exits, resp.Result.ExitCode)
	}
	return resp, err
}

// TestExtraStepSeesEveryAction: a step added through Options.Steps (as
// metrics or a tenant check would be) wraps the chain without any other
// step changing.
func TestExtraStepSeesEveryAction(t *testing.T) {
	h := newHarness(t)
	step := &countingStep{}
	w, err := worker.New(worker.Options{
		ID: "w2", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, BuildDir: filepath.Join(h.dir, "builds-steps"),
		Steps: []func(worker.Executor) worker.Executor{func(next worker.Executor) worker.Executor { step.next = next; return step }},
	})
	if err != nil {
		t.Fatal(err)
	}
	ok(t, w.Execute(context.Background(), h.action(sh("exit 0"), &repb.Directory{}, false)))
	ok(t, w.Execute(context.Background(), h.action(sh("exit 3"), &repb.Directory{}, false)))
	if fmt.Sprint(step.exits) != "[0 3]" {
		t.Fatalf("the extra step saw exit codes %v, want [0 3]", step.exits)
	}
}

// TestInputTreeLimits: an input root is sized from its Directory blobs,
// each reuse counted, before anything is created: a Merkle bomb (a few
// hundred bytes of blobs, 2^30 files) and a 5,000-deep chain are refused
// with INVALID_ARGUMENT, the runner never called.
func TestInputTreeLimits(t *testing.T) {
	h := newHarness(t)
	file := h.put([]byte("x"))
	bomb := &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: file.Proto()}, {Name: "b", Digest: file.Proto()}}}
	for range 29 {
		d := h.putProto(bomb)
		bomb = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: d.Proto()}, {Name: "b", Digest: d.Proto()}}}
	}
	chain := &repb.Directory{}
	for range 5000 {
		d := h.putProto(chain)
		chain = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: d.Proto()}}}
	}
	// A size that wraps the sum around past the largest int64.
	wrap := &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: file.Proto()},
		{Name: "b", Digest: &repb.Digest{Hash: strings.Repeat("0", 64), SizeBytes: math.MaxInt64}}}}
	for _, tc := range []struct {
		name string
		root *repb.Directory
		want string
	}{
		{"Merkle bomb", bomb, "max_input_files"},
		{"5,000-deep chain", chain, "max_input_depth"},
		{"sizes that wrap around", wrap, "max_input_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := h.runner.Calls()
			a := h.action(sh("true"), tc.root, false)
			resp := h.w.Execute(context.Background(), a)
			st := status.FromProto(resp.Status)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) || len(st.Message()) > 1000 {
				t.Fatalf("status %v, want a short INVALID_ARGUMENT naming %s", st, tc.want)
			}
			if h.runner.Calls() != calls {
				t.Fatal("the runner was called")
			}
		})
	}
	// The worker goes on.
	ok(t, h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, false)))
}

// TestOutputLimits: outputs past a limit (too deep, too many bytes, a
// sparse file counting by its apparent size) fail the action with
// INVALID_ARGUMENT naming the limit, and nothing is cached; directories
// and symlinks count as files, not as bytes.
func TestOutputLimits(t *testing.T) {
	h := newHarness(t)
	w, err := worker.New(worker.Options{
		ID: "w-limits", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, BuildDir: filepath.Join(h.dir, "builds-limits"),
		OutputLimits: worker.OutputLimits{MaxDepth: 20, MaxBytes: 1 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cmd  *repb.Command
		want string
	}{
		{"deep directory", sh(`p=out; for i in $(seq 30); do p=$p/d; done; mkdir -p $p`, "out"), "max_output_depth"},
		{"sparse file", sh(`truncate -s 3G big`, "big"), "max_output_bytes"},
		{"sparse file in a directory", sh(`mkdir out && truncate -s 3G out/big`, "out"), "max_output_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.action(tc.cmd, &repb.Directory{}, false)
			st := status.FromProto(w.Execute(context.Background(), a).Status)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("status %v, want INVALID_ARGUMENT naming %s", st, tc.want)
			}
			if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
				t.Fatalf("the result was cached: %v", err)
			}
		})
	}
	// Directories and symlinks are not output bytes, whatever their
	// st_size: 300 directories of 4 KiB each and a symlink pass the 1 MiB.
	a := h.action(sh(`mkdir out && cd out && seq 300 | xargs mkdir && ln -s 1 link`, "out"), &repb.Directory{}, false)
	if st := status.FromProto(w.Execute(context.Background(), a).Status); st.Code() != codes.OK {
		t.Fatalf("empty directories counted as bytes: %v", st)
	}
}

// cancellingCAS cancels an action when its first file is fetched, and
// counts the fetches.
type cancellingCAS struct {
	storage.BlobStore
	cancel  context.CancelFunc
	fetches atomic.Int64
	files   map[string]bool
}

func (c *cancellingCAS) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if c.files[d.Hash()] && c.fetches.Add(1) == 1 {
		c.cancel()
	}
	return c.BlobStore.Get(ctx, d, offset)
}

// TestCancelStopsMaterialisation: an action cancelled while its input root
// is being built stops fetching and linking at once (not after its 500
// files) and never reaches the runner.
func TestCancelStopsMaterialisation(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cas := &cancellingCAS{BlobStore: h.cas, cancel: cancel, files: map[string]bool{}}
	root := &repb.Directory{}
	for i := range 500 {
		d := h.put([]byte(fmt.Sprint("input ", i)))
		cas.files[d.Hash()] = true
		root.Files = append(root.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d", i), Digest: d.Proto()})
	}
	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(h.dir, "files-cancel"), CAS: cas})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{ID: "w-cancel", CAS: cas, AC: h.ac, Files: files, Runner: h.runner,
		BuildDir: filepath.Join(h.dir, "builds-cancel"), FetchParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	calls := h.runner.Calls()
	resp := w.Execute(ctx, h.action(sh("true"), root, false))
	if st := status.FromProto(resp.Status); st.Code() != codes.Canceled {
		t.Fatalf("status %v, want CANCELLED", st)
	}
	if n := cas.fetches.Load(); n > 20 {
		t.Fatalf("%d of 500 input files fetched after the cancel, want a handful (those in flight)", n)
	}
	if h.runner.Calls() != calls {
		t.Fatal("a cancelled action reached the runner")
	}
}

// withAdopter replaces h's worker by one whose CAS (on the build
// directories' filesystem) keeps output files as they are.
func withAdopter(t *testing.T, h *harness) {
	t.Helper()
	var err error
	h.w, err = worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, Adopter: h.cas,
		BuildDir: filepath.Join(h.dir, "builds"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.w.Close)
}

// requireLeases skips the test where dir's filesystem cannot make unnamed
// files or grant file leases, without which no output is adopted.
func requireLeases(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Skipf("no unnamed files here: %v", err)
	}
	unix.Close(fd)
	p := filepath.Join(dir, "lease-probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		t.Skipf("no file leases here: %v", err)
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK) // only a probe; closing f drops the lease too
}

// adopted runs script, which must print the inode of its output "out" as
// the last line of its stdout, and reports whether the CAS holds that
// inode as the output's blob (kept as it is) rather than a copy; it
// checks the blob's bytes either way.
func adopted(t *testing.T, h *harness, script, want string) (bool, string) {
	t.Helper()
	res := ok(t, h.w.Execute(context.Background(), h.action(sh(script+"; stat -c %i out", "out"), &repb.Directory{}, true)))
	if len(res.OutputFiles) != 1 {
		t.Fatalf("outputs %v", res.OutputFiles)
	}
	d, err := digest.FromProto(sha256, res.OutputFiles[0].Digest, "out")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(h.read(res.OutputFiles[0].Digest)); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	lines := strings.Fields(string(h.read(res.StdoutDigest)))
	ino, err := strconv.ParseUint(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("stdout %q", lines)
	}
	p, found := h.cas.Path(d)
	if !found {
		t.Fatal("output not in the CAS")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino == ino, p
}

// TestOutputFilesAreAdopted: with an Adopter, an output file the action
// left alone is the CAS's blob itself, the worker's and read-only; one
// with another name, an extended attribute, or a process still holding it
// open for writing is copied, and the copy holds the bytes it had.
func TestOutputFilesAreAdopted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the worker gives each adopted output to itself")
	}
	h := newHarness(t)
	requireLeases(t, h.dir)
	withAdopter(t, h)

	before := time.Now().Add(-time.Second)
	kept, p := adopted(t, h, "echo plain > out; chmod 0775 out; touch -d 2099-01-01 out", "plain\n")
	if !kept {
		t.Error("a plain output was copied")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || st.Mode&0o7777 != 0o444 || st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
		t.Errorf("adopted blob: mode %o, owner %d:%d, %v; want 0444 and the worker's", st.Mode, st.Uid, st.Gid, err)
	}
	if mt := time.Unix(st.Mtim.Unix()); mt.Before(before) || mt.After(time.Now()) {
		t.Errorf("adopted blob dated %v, the action's date; want the time it was stored", mt)
	}

	if kept, _ := adopted(t, h, "echo linked > out; ln out other", "linked\n"); kept {
		t.Error("an output with a second name was adopted")
	}
	// An attribute the action set (here before the command, as the
	// action could have).
	h.runner.Before = func(root string) {
		if err := os.WriteFile(filepath.Join(root, "out"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setxattr(filepath.Join(root, "out"), "user.mark", []byte("x"), 0); err != nil {
			t.Skipf("no user attributes here: %v", err)
		}
	}
	if kept, _ := adopted(t, h, "echo marked >> out", "marked\n"); kept {
		t.Error("an output with an extended attribute was adopted")
	}
	h.runner.Before = nil

	// A writer left behind: a process that outlived the command (as a
	// descriptor in flight in a socket would) with the file open for
	// writing. It appends after the upload; the blob must not change.
	// It writes only once the test says so (go), after the upload,
	// however slow the machine: its descriptor is open until then.
	mark, goAhead := filepath.Join(h.dir, "late-written"), filepath.Join(h.dir, "go")
	script := "echo held > out; exec 3>>out; (i=0; while [ ! -e " + goAhead + " ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; " +
		"echo late >&3; touch " + mark + ") >/dev/null 2>&1 & exec 3>&-"
	kept, p = adopted(t, h, script, "held\n")
	if kept {
		t.Error("an output held open for writing was adopted")
	}
	if err := os.WriteFile(goAhead, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late writer did not write")
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "held\n" {
		t.Errorf("the blob after the late write: %q, %v", b, err)
	}
}
