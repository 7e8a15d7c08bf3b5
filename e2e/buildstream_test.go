package e2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/testfs"
)

// bstTimeout bounds one BuildStream command, against hangs; not an
// assertion on speed.
const bstTimeout = 4 * time.Minute

// buildStream runs Debian's BuildStream 1.6 (`bst`) in one project with a
// user config of its own: its caches (artifacts included) under cache, so
// that two of them are two machines' local caches.
type buildStream struct {
	t       *testing.T
	project string
	config  string
}

func newBuildStream(t *testing.T, project, cache, remote string) *buildStream {
	t.Helper()
	config := filepath.Join(cache, "buildstream.conf")
	body := "sourcedir: " + filepath.Join(cache, "sources") + "\n" +
		"builddir: " + filepath.Join(cache, "build") + "\n" +
		"artifactdir: " + filepath.Join(cache, "artifacts") + "\n" +
		"logdir: " + filepath.Join(cache, "logs") + "\n" +
		"artifacts:\n  url: http://" + remote + "\n  push: true\n"
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return &buildStream{t: t, project: project, config: config}
}

// run runs bst with args and fails the test unless it succeeds; it
// returns the combined output.
func (b *buildStream) run(args ...string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), bstTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bst", append([]string{"--config", b.config, "--no-interactive", "--no-colors"}, args...)...)
	cmd.Dir = b.project
	home := filepath.Dir(b.config)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("bst %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBuildStream: BuildStream 1.6 keeps its artifacts in Paddock through
// the Remote Asset API (it probes for it with empty requests and uses an
// empty instance name). A project (a busybox sysroot imported, and an
// element built in a sandbox on top of it) builds and pushes; a fresh local
// cache then pulls both artifacts back instead of building, byte-identical.
func TestBuildStream(t *testing.T) {
	needPaddock(t)
	if _, err := exec.LookPath("bst"); err != nil {
		t.Skip("bst is not installed; install Debian's buildstream (BuildStream 1.6) to run this test")
	}
	project := t.TempDir()
	testfs.WriteFiles(t, project, map[string]string{
		"project.conf":      "name: paddock-e2e\nelement-path: elements\n",
		"elements/base.bst": "kind: import\nsources:\n- kind: local\n  path: sysroot\n",
		"elements/hello.bst": `kind: manual
build-depends:
- base.bst
config:
  install-commands:
  - mkdir -p %{install-root}/out
  - echo hello from buildstream > %{install-root}/out/hello.txt
`,
		"sysroot/bin/busybox": string(imagetest.Busybox(t)),
	})
	if err := os.Chmod(filepath.Join(project, "sysroot/bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "mkdir", "echo", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(project, "sysroot/bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	f := startUp(t, "")

	first := newBuildStream(t, project, filepath.Join(t.TempDir(), "first"), f.addr)
	out := first.run("build", "hello.bst")
	if strings.Contains(out, "Failed to initialize remote") || !strings.Contains(out, "Push Queue:  processed 2, skipped 0, failed 0") {
		t.Fatalf("bst build did not push both artifacts to paddock:\n%s", out)
	}
	fresh := newBuildStream(t, project, filepath.Join(t.TempDir(), "fresh"), f.addr)
	out = fresh.run("pull", "--deps", "all", "hello.bst")
	if !strings.Contains(out, "Pull Queue: processed 2, skipped 0, failed 0") {
		t.Fatalf("bst pull into a fresh cache did not pull both artifacts:\n%s", out)
	}
	// Nothing is left to build in the fresh cache.
	if out = fresh.run("build", "hello.bst"); strings.Contains(out, "Build Queue: processed 1") || strings.Contains(out, "Build Queue: processed 2") {
		t.Errorf("the fresh cache rebuilt an element it had pulled:\n%s", out)
	}
	for _, element := range []string{"base.bst", "hello.bst"} {
		a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
		first.run("checkout", element, a)
		fresh.run("checkout", element, b)
		if diff := compareTrees(t, a, b); diff != "" {
			t.Errorf("%s checked out from the pulled artifact differs from the built one: %s", element, diff)
		}
	}
	f.shutdown()
}

// compareTrees returns "" when the trees at a and b hold the same files,
// symlinks and modes with the same contents, or the first difference.
func compareTrees(t *testing.T, a, b string) string {
	t.Helper()
	list := func(root string) map[string]string {
		m := map[string]string{}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { // never fails: errors are recorded in m
			if err != nil {
				m[p] = "error: " + err.Error()
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			info, _ := d.Info()
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				m[rel] = "symlink " + target
			case d.IsDir():
				m[rel] = "dir"
			default:
				data, _ := os.ReadFile(p)
				m[rel] = info.Mode().Perm().String() + " " + string(data)
			}
			return nil
		})
		return m
	}
	la, lb := list(a), list(b)
	if len(la) != len(lb) {
		return "different numbers of entries"
	}
	for p, v := range la {
		if lb[p] != v {
			return p
		}
	}
	if len(la) < 2 {
		return "nothing checked out"
	}
	return ""
}
