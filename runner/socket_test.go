package runner

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/testdisk"
)

// readyOnly answers CheckReadiness only.
type readyOnly struct {
	runnerpb.UnimplementedRunnerServer
}

func (readyOnly) CheckReadiness(context.Context, *runnerpb.CheckReadinessRequest) (*runnerpb.CheckReadinessResponse, error) {
	return &runnerpb.CheckReadinessResponse{Version: "v"}, nil
}

// TestListen: the socket is created with mode 0600 (replacing a stale
// socket, refusing to replace anything else), Dial and WaitReady reach it,
// and closing the listener removes it.
func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sub", "runner.sock")

	// A stale socket from a crashed runner is replaced.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	lis, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(sock)
	if err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket with mode 0600", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 2 {
		t.Errorf("socket directory holds %d entries, want the socket and its private directory", len(ents))
	}
	if st, err := os.Lstat(filepath.Join(filepath.Dir(sock), ".runner.sock.d")); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("private directory: %v, %v; want a directory with mode 0700", st, err)
	}
	g := grpc.NewServer()
	runnerpb.RegisterRunnerServer(g, readyOnly{})
	go func() { _ = g.Serve(lis) }() // returns when the test stops the server
	client, closer, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := WaitReady(ctx, client); err != nil || v != "v" {
		t.Fatalf("WaitReady = %q, %v", v, err)
	}
	closer.Close()
	g.Stop()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after the listener closed: %v", err)
	}

	// Anything but a socket at the path is left alone.
	if err := os.WriteFile(sock, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Errorf("the regular file was replaced")
	}
}

// TestWaitReadyGivesUp: with nothing listening, WaitReady returns when its
// context ends.
func TestWaitReadyGivesUp(t *testing.T) {
	client, closer, err := Dial(filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := WaitReady(ctx, client); err == nil {
		t.Fatal("WaitReady succeeded with no runner")
	}
}

// A runner that stopped without removing its socket (killed, or its
// machine's power cut) starts again on a filesystem with no inode left:
// the stale socket's inode is all the new one needs. With no inode at
// all, the error says the disk is full.
func TestListenOnAFullDisk(t *testing.T) {
	disk := testdisk.Mount(t, 16<<20, 512)
	sock := filepath.Join(disk, "runner.sock")
	lis, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	lis.(*socketListener).UnixListener.Close() // as a crash leaves it
	free := testdisk.FillInodes(t, disk)
	defer free()
	lis, err = Listen(sock)
	if err != nil {
		t.Fatalf("Listen with only the stale socket's inode: %v", err)
	}
	if st, err := os.Lstat(sock); err != nil || st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket with mode 0600", st, err)
	}
	lis.Close() // removes the socket
	testdisk.FillInodes(t, disk)
	if _, err := Listen(sock); !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "the disk is full") {
		t.Errorf("Listen with no inode left: %v, want an error saying the disk is full", err)
	}
}

// The socket's private directory is trusted only as a directory of the
// runner's user, never through a symlink, and its mode is made 0700
// before the socket is made in it.
func TestListenPrivateDirectory(t *testing.T) {
	requireRoot(t)
	for name, tc := range map[string]struct {
		prepare func(t *testing.T, priv string)
		refused bool
	}{
		"a symlink": {func(t *testing.T, priv string) {
			if err := os.Symlink(t.TempDir(), priv); err != nil {
				t.Fatal(err)
			}
		}, true},
		"another user's": {func(t *testing.T, priv string) {
			if err := os.Mkdir(priv, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(priv, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, true},
		"loosened": {func(t *testing.T, priv string) {
			if err := os.Mkdir(priv, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(priv, 0o777); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			sock, priv := filepath.Join(dir, "runner.sock"), filepath.Join(dir, ".runner.sock.d")
			tc.prepare(t, priv)
			lis, err := Listen(sock)
			if tc.refused {
				if err == nil {
					lis.Close()
					t.Fatal("Listen succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			if st, err := os.Lstat(priv); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("private directory %v, %v; want mode 0700", st, err)
			}
		})
	}
}
