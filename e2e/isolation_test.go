package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/internal/nettest"
)

// TestIsolationThroughTheStack sends actions through `paddock up` (the
// REv2 API, scheduler, worker, runner and sandbox) that try to get out of
// their sandbox, and checks from the host that they could not.
func TestIsolationThroughTheStack(t *testing.T) {
	// The host's network is allowed here to prove that the check of the
	// default (a private network) can tell the difference.
	f, c := startUpClient(t, "--runner-config", hostNetworkConfig(t))
	ctx := t.Context()

	t.Run("NoHostLoopbackByDefault", func(t *testing.T) {
		c := c.withT(t)
		// A server on the host's loopback that counts who reaches it.
		witness := nettest.NewWitness(t, "host loopback\n")
		port := strconv.Itoa(witness.Port)
		// bash's /dev/tcp connects; the exit code says whether it could.
		connect := func(platform ...*repb.Platform_Property) *repb.ActionResult {
			cmd := &repb.Command{
				Arguments:            []string{"/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + port + " && cat <&3"},
				EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
			}
			r, _, _ := c.run(ctx, action{cmd: cmd, platform: platform, doNotCache: true})
			return r
		}
		r := connect()
		if r.ExitCode == 0 || witness.Accepted() != 0 {
			t.Errorf("an action without dockerNetwork reached the host's 127.0.0.1:%s (exit code %d, %d connections accepted)", port, r.ExitCode, witness.Accepted())
		}
		// The control: with the host's network asked for, the same command
		// gets through, so the check above can see a connection.
		r = connect(&repb.Platform_Property{Name: "dockerNetwork", Value: "standard"})
		if r.ExitCode != 0 || witness.Accepted() != 1 {
			t.Errorf("with dockerNetwork=standard the action did not reach the host's 127.0.0.1:%s (exit code %d, %d connections accepted); the check above proves nothing", port, r.ExitCode, witness.Accepted())
		}
	})

	t.Run("InputsAreReadOnly", func(t *testing.T) {
		c := c.withT(t)
		content := []byte("the cached input, which no action may change\n")
		root := tree{files: map[string]inputFile{
			"in/data.txt": {data: content},
			"in/tool.sh":  {data: []byte("#!/bin/sh\necho tool\n"), executable: true},
		}}
		// Every way to change the file in place; each prints whether it
		// worked. Replacing the directory entry is allowed (the input root
		// is the action's), so it comes last.
		script := `
try() { if "$@" 2>/dev/null; then echo "WROTE: $*"; else echo "refused: $*"; fi; }
try sh -c 'echo evil > in/data.txt'
try sh -c 'echo evil >> in/data.txt'
try sh -c 'printf evil | dd of=in/data.txt conv=notrunc status=none'
try truncate -s 0 in/data.txt
try chmod 0666 in/data.txt
try sh -c 'echo evil > in/tool.sh'
try chmod 0777 in/tool.sh
try touch -d 2000-01-01 in/data.txt
ln in/data.txt hardlink 2>/dev/null && try sh -c 'echo evil > hardlink'
rm -f in/data.txt && echo replaced > in/data.txt
cat in/data.txt
`
		_, stdout, stderr := c.run(ctx, action{cmd: shell(script), root: root, doNotCache: true})
		t.Logf("the action's attempts:\n%s", stdout)
		if strings.Contains(stdout, "WROTE") || !strings.Contains(stdout, "refused: chmod 0666 in/data.txt") {
			t.Errorf("an action changed a file of its input root in place:\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
		if !strings.Contains(stdout, "replaced\n") {
			t.Errorf("the action could not replace an input in its own input root (it may):\n%s", stdout)
		}
		// The CAS copy (in `paddock up` the worker's file cache is the CAS
		// directory, hard-linked) is intact...
		d := digestOf(content)
		if got := c.read(ctx, d); !bytes.Equal(got, content) || digestOf(got).Hash != d.Hash {
			t.Errorf("the CAS returns %q for the input after the action, want %q", got, content)
		}
		// ... and so is what the next action gets as its input.
		_, stdout, _ = c.run(ctx, action{cmd: shell("cat in/data.txt; sha256sum in/data.txt"), root: root, doNotCache: true})
		if !strings.HasPrefix(stdout, string(content)) || !strings.Contains(stdout, d.Hash) {
			t.Errorf("the next action reads %q from the same input, want %q (sha256 %s)", stdout, content, d.Hash)
		}
	})

	t.Run("SymlinkedOutputParent", func(t *testing.T) {
		c := c.withT(t)
		if _, err := os.Lstat("/etc/x"); err == nil {
			t.Skip("/etc/x exists on this host; the check needs it absent")
		}
		// The input root is <data>/worker/builds/<op>/root, so from there
		// ../../../../etc is <data>/etc on the host (and /etc in the sandbox).
		root := tree{
			symlinks: map[string]string{"link": "../../../../etc"},
			files:    map[string]inputFile{"keep.txt": {data: []byte("k\n")}},
		}
		// The marker is spelt so that the Command (stored in the CAS too)
		// does not contain it.
		cmd := shell("m=pw; echo ${m}ned > link/x; mkdir -p link/y; echo ${m}ned > link/y/x; true", "link/x")
		r, stdout, stderr := c.run(ctx, action{cmd: cmd, root: root, doNotCache: true})
		t.Logf("the action's stderr: %s", stderr)
		if !strings.Contains(stderr, "link/x") {
			t.Errorf("the action's stderr %q does not show its write to link/x refused", stderr)
		}
		if len(r.OutputFiles) != 0 {
			t.Errorf("output files %v collected through a symlink that leaves the input root", r.OutputFiles)
		}
		for _, p := range []string{"/etc/x", "/etc/y", filepath.Join(f.data, "etc")} {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists after the action (lstat: %v); stdout %q, stderr %q", p, err, stdout, stderr)
				os.RemoveAll(p)
			}
		}
		// Nothing the action wrote is anywhere under <data>.
		builds := filepath.Join(f.data, "worker", "builds")
		// Never fails: its func skips what it cannot read.
		_ = filepath.WalkDir(f.data, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(p, builds+"/") || !d.Type().IsRegular() {
				return nil
			}
			if data, err := os.ReadFile(p); err == nil && bytes.Contains(data, []byte("pwned")) {
				t.Errorf("%s, outside the build directory, holds what the action wrote", p)
			}
			return nil
		})
	})

	t.Run("OutputSymlinksNotFollowed", func(t *testing.T) {
		c := c.withT(t)
		// A secret only host root can read. The worker collects outputs as
		// host root: following an output symlink to it would upload it.
		secret := make([]byte, 64)
		for i := range secret {
			secret[i] = byte(i*31 + 7)
		}
		secretPath := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(secretPath, secret, 0o600); err != nil {
			t.Fatal(err)
		}
		sd := digestOf(secret)
		checkCAS := func(what string) {
			resp, err := c.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sd}})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.MissingBlobDigests) != 1 {
				t.Errorf("%s: the CAS holds the bytes of %s, which the action only pointed symlinks at", what, secretPath)
			}
		}

		// An absolute output symlink: the server disallows them
		// (Capabilities), so the spec wants FAILED_PRECONDITION.
		resp, err := c.execute(ctx, c.prepare(ctx, action{cmd: shell("ln -s "+secretPath+" abs", "abs"), doNotCache: true}), true)
		if err != nil {
			t.Fatal(err)
		}
		if st := status.FromProto(resp.Status); st.Code() != codes.FailedPrecondition {
			t.Errorf("an absolute output symlink: status %v, want FAILED_PRECONDITION (absolute symlinks are DISALLOWED)", st)
		}
		checkCAS("an absolute output symlink")

		// Relative symlinks that leave the input root, inside an output
		// directory: recorded as symlinks, never followed.
		up := strings.Repeat("../", 12)
		script := "mkdir -p dir/sub && ln -s " + up + secretPath[1:] + " dir/sub/rel && ln -s " + up + filepath.Dir(secretPath)[1:] + " dir/parent"
		r, _, stderr := c.run(ctx, action{cmd: shell(script, "dir"), doNotCache: true})
		if r.ExitCode != 0 || len(r.OutputDirectories) != 1 {
			t.Fatalf("the action made its symlinks with exit code %d (%s), output directories %v", r.ExitCode, stderr, r.OutputDirectories)
		}
		tr := &repb.Tree{}
		if err := proto.Unmarshal(c.read(ctx, r.OutputDirectories[0].TreeDigest), tr); err != nil {
			t.Fatal(err)
		}
		symlinks := 0
		for _, d := range append([]*repb.Directory{tr.Root}, tr.Children...) {
			for _, f := range d.Files {
				t.Errorf("output directory holds file %s (%s), want only directories and symlinks", f.Name, f.Digest.Hash)
			}
			symlinks += len(d.Symlinks)
		}
		if symlinks != 2 {
			t.Errorf("output directory tree %v: want its 2 symlinks recorded as symlinks", tr)
		}
		checkCAS("escaping relative symlinks")
	})

	t.Run("EnvironmentIsTheCommands", func(t *testing.T) {
		c := c.withT(t)
		env := []*repb.Command_EnvironmentVariable{
			{Name: "PATH", Value: "/usr/bin:/bin"},
			{Name: "ZED", Value: "last in name, first in order"},
			{Name: "EMPTY", Value: ""},
			{Name: "EQUALS", Value: "a=b=c"},
			{Name: "SPACES", Value: "  two  spaces  "},
		}
		cmd := &repb.Command{Arguments: []string{"/usr/bin/env", "-0"}, EnvironmentVariables: env}
		_, stdout, stderr := c.run(ctx, action{cmd: cmd, doNotCache: true})
		var want []string
		for _, e := range env {
			want = append(want, e.Name+"="+e.Value)
		}
		got := strings.Split(strings.TrimSuffix(stdout, "\x00"), "\x00")
		// The runner documents no defaults: default_environment is empty
		// unless configured (runner.Config.DefaultEnvironment), so the
		// environment is exactly the Command's, in its order.
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("environment inside the sandbox:\n%s\nwant exactly the Command's:\n%s\nstderr: %s", strings.Join(got, "\n"), strings.Join(want, "\n"), stderr)
		}
	})

	f.shutdown()
}

// TestEnvironmentDefaults: the only variables a runner adds are its
// configured default_environment (runner.Config.DefaultEnvironment, empty
// by default), after the Command's, sorted, and only those the Command
// does not set.
func TestEnvironmentDefaults(t *testing.T) {
	needPaddock(t)
	cfg := filepath.Join(searchableTempDir(t), "runner.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\ndefault_environment:\n  TZ: UTC\n  LANG: C.UTF-8\n  PATH: /not/this\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--runner-config", cfg)
	cmd := &repb.Command{
		Arguments: []string{"/usr/bin/env", "-0"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{
			{Name: "PATH", Value: "/usr/bin:/bin"},
			{Name: "FOO", Value: "bar"},
		},
	}
	_, stdout, _ := c.run(t.Context(), action{cmd: cmd, doNotCache: true})
	got := strings.Split(strings.TrimSuffix(stdout, "\x00"), "\x00")
	want := []string{"PATH=/usr/bin:/bin", "FOO=bar", "LANG=C.UTF-8", "TZ=UTC"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("environment with default_environment configured:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.shutdown()
}
