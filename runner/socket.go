package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/unixsock"
)

// Listen creates the runner's UNIX socket at socketPath with mode 0600, so
// only the runner's user (the worker runs as it) may connect. The socket
// is made in a private directory, chmodded, and renamed into place: it is
// never reachable with looser permissions. A stale socket at socketPath
// (from a runner that crashed) is replaced; any other file is an error.
// Closing the listener removes the socket.
//
// The private directory (socketDir) stays from one start to the next, so
// that a start needs no inode but the socket's own: on a filesystem out
// of inodes, the stale socket's is enough to start again, where a fresh
// directory made the start fail.
func Listen(socketPath string) (net.Listener, error) {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, socketError("runner socket directory", err)
	}
	if err := unixsock.RemoveStale(abs); err != nil {
		return nil, fmt.Errorf("runner socket: %w", err)
	}
	priv, err := openSocketDir(socketDir(abs))
	if err != nil {
		return nil, err
	}
	defer priv.Close()
	lis, err := listenIn(priv)
	if err != nil {
		return nil, socketError("listen on runner socket "+abs, err)
	}
	if err := unix.Renameat(int(priv.Fd()), "s", unix.AT_FDCWD, abs); err != nil {
		lis.Close()
		return nil, socketError("place runner socket", err)
	}
	return &socketListener{UnixListener: lis, path: abs}, nil
}

// socketDir is the private directory where Listen makes the socket at
// abs (an absolute path), beside it. One place names it: New hides it
// from host-root sandboxes.
func socketDir(abs string) string {
	return filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".d")
}

// openSocketDir opens the private directory p where the socket is made,
// making it if need be. It must be a directory owned by the runner's
// user, opened without following a symlink, and is chmodded 0700 through
// that descriptor, before anything is made in it: whoever made or
// loosened it cannot reach what is made there afterwards.
func openSocketDir(p string) (*os.File, error) {
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, socketError("runner socket's private directory", err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("runner socket's private directory %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("runner socket's private directory %s: %w", p, err)
	}
	if int(st.Uid) != os.Geteuid() {
		f.Close()
		return nil, fmt.Errorf("runner socket's private directory %s: owned by uid %d, not the runner's: remove it", p, st.Uid)
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		f.Close()
		return nil, fmt.Errorf("runner socket's private directory %s: %w", p, err)
	}
	return f, nil
}

// listenIn listens on a socket "s" in the directory dir, mode 0600. It
// goes through dir's descriptor (/proc/self/fd), never its path, so that
// nothing swapped in at the path meanwhile receives the socket. A stale
// "s" (a crash between bind and rename) is removed first.
func listenIn(dir *os.File) (*net.UnixListener, error) {
	if err := unix.Unlinkat(int(dir.Fd()), "s", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, err
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/s", dir.Fd()), Net: "unix"})
	if err != nil {
		return nil, err
	}
	lis.SetUnlinkOnClose(false)
	if err := unix.Fchmodat(int(dir.Fd()), "s", 0o600, 0); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

// socketError wraps err with what, saying so when the disk is full (out
// of space or inodes): the bare errno reads as a puzzle on a bind.
func socketError(what string, err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("%s: the disk is full (no space or no inodes left): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// socketListener removes its socket file when closed.
type socketListener struct {
	*net.UnixListener
	path string
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Addr reports the socket's final path.
func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// socketWindow is the flow-control window of the runner's socket, per
// stream and per connection. Set explicitly, it turns off gRPC's
// bandwidth-delay estimation, which pings the peer after nearly every
// message received: on a local socket that carries one small request and
// one small response per action, those pings and their answers were extra
// frames, reads and thread wake-ups for every action. Larger messages
// still pass, in window-sized pieces.
const socketWindow = 1 << 20

// ServerOptions are the gRPC server options for the runner's socket.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StaticStreamWindowSize(socketWindow), grpc.StaticConnWindowSize(socketWindow)}
}

// socketMaxDelay bounds the pause between attempts to reach the runner
// while it is away (the backoff starts at 100 ms). gRPC's default grows
// to 120 s, meant for remote servers: a worker whose runner had restarted
// kept failing actions ("runner not ready after 30s ... connection
// refused") for up to two minutes after the runner was back. Trying a
// local socket costs next to nothing.
const socketMaxDelay = time.Second

// DialOptions are the gRPC options of a connection to the runner's socket.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(socketWindow), grpc.WithStaticConnWindowSize(socketWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: socketMaxDelay},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
}

// Dial returns a client of the runner serving on socketPath. The
// connection is made lazily; use WaitReady to wait for the runner. Close
// the returned Closer when done.
func Dial(socketPath string) (runnerpb.RunnerClient, io.Closer, error) {
	conn, err := DialConn(socketPath)
	if err != nil {
		return nil, nil, err
	}
	return runnerpb.NewRunnerClient(conn), conn, nil
}

// DialConn is Dial for a caller that also watches the connection's state
// (the worker skips a readiness check per action while it is ready).
func DialConn(socketPath string) (*grpc.ClientConn, error) {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+abs, DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("dial runner %s: %w", abs, err)
	}
	return conn, nil
}

// WaitReady blocks until the runner answers CheckReadiness (waiting for the
// socket to appear and accept), or ctx ends. It returns the runner's
// version.
func WaitReady(ctx context.Context, c runnerpb.RunnerClient) (string, error) {
	resp, err := c.CheckReadiness(ctx, &runnerpb.CheckReadinessRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return "", fmt.Errorf("runner not ready: %w", err)
	}
	return resp.GetVersion(), nil
}
