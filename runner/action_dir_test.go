package runner

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
)

// privateAction is newAction with its directory made as the worker makes
// it: mode 0700, root's.
func (e *testEnv) privateAction(t *testing.T) (*action, string) {
	t.Helper()
	a := e.newAction(t)
	dir := filepath.Dir(a.root)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return a, dir
}

// TestActionDirKeepsHostUsersOut: an action copies a shell into its input
// root and makes it setuid. With the action directory given to the
// sandbox's ids (mode 0700), the sandbox still reaches its input root, and
// another user of the host can no longer reach the copy, so cannot run it
// as the sandbox's uid (and from there reach the slot's later sandboxes).
// With runc (if installed) as the runtime too: it opens the input root
// from inside the sandbox's user namespace as well.
func TestActionDirKeepsHostUsersOut(t *testing.T) {
	runc, _ := exec.LookPath("runc")
	for _, tc := range []struct{ name, runtime string }{{"native", ""}, {"runc", runc}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "runc" && runc == "" {
				t.Skip("runc not installed")
			}
			e := newTestEnv(t, func(c *Config) {
				c.Sandbox.Runtime = tc.runtime
				if tc.runtime != "" {
					c.Sandbox.RuntimeRoot = t.TempDir()
				}
			})
			checkActionDirKeepsHostUsersOut(t, e)
		})
	}
}

func checkActionDirKeepsHostUsersOut(t *testing.T, e *testEnv) {
	t.Helper()
	a, dir := e.privateAction(t)
	req := a.request("/bin/sh", "-c", "cp /bin/sh plant && chmod 4755 plant && echo planted")
	req.ActionDir = dir
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	plant := filepath.Join(a.root, "plant")
	st, err := os.Lstat(plant)
	if err != nil || st.Mode()&fs.ModeSetuid == 0 {
		t.Fatalf("the action's setuid copy: %v, %v", st, err)
	}
	sandboxUID := st.Sys().(*syscall.Stat_t).Uid
	dst, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := dst.Sys().(*syscall.Stat_t).Uid; uid != sandboxUID || dst.Mode().Perm() != 0o700 {
		t.Errorf("action directory: uid %d mode %v; want the sandbox's uid %d and 0700", uid, dst.Mode().Perm(), sandboxUID)
	}

	// nobody runs the copy, as any local user could.
	cmd := exec.Command(plant, "-c", "id -u")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("nobody ran the action's setuid copy: %v, output %q; want permission denied", err, out)
	}
}

// TestActionDirChecked: the runner chowns the action directory, so it must
// be the input root's and the output files' own parent, and a directory.
func TestActionDirChecked(t *testing.T) {
	e := newTestEnv(t, nil)
	a, dir := e.privateAction(t)
	link := dir + "-link"
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, dir, stdout string }{
		{"the build directory", filepath.Dir(dir), a.stdout},
		{"relative", "build/1", a.stdout},
		{"the root", "/", a.stdout},
		{"stdout elsewhere", dir, filepath.Join(e.build, "stdout")},
		{"a symlink", link, a.stdout},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := a.request("/bin/true")
			req.ActionDir, req.StdoutPath = c.dir, c.stdout
			if c.name == "a symlink" {
				req.InputRoot, req.StdoutPath, req.StderrPath = filepath.Join(link, "root"), filepath.Join(link, "stdout"), filepath.Join(link, "stderr")
			}
			resp := e.run(t, req)
			if codes.Code(resp.StatusCode) != codes.InvalidArgument || !strings.Contains(resp.StatusMessage, "action_dir") {
				t.Errorf("%s; want INVALID_ARGUMENT naming action_dir", describe(resp))
			}
		})
	}
	if st, err := os.Lstat(filepath.Dir(dir)); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the build directory was given away: %v, %v", st, err)
	}
}
