package runner

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/runnerpb"
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
	if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket", len(ents))
	}
	g := grpc.NewServer()
	runnerpb.RegisterRunnerServer(g, readyOnly{})
	go g.Serve(lis)
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
