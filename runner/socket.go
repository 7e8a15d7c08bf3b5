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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// Listen creates the runner's UNIX socket at socketPath with mode 0600, so
// only the runner's user (the worker runs as it) may connect. The socket
// is made in a private directory, chmodded, and renamed into place: it is
// never reachable with looser permissions. A stale socket at socketPath
// (from a runner that crashed) is replaced; any other file is an error.
// Closing the listener removes the socket.
func Listen(socketPath string) (net.Listener, error) {
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runner socket directory: %w", err)
	}
	if st, err := os.Lstat(abs); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("runner socket %s: exists and is not a socket", abs)
		}
		if err := os.Remove(abs); err != nil {
			return nil, fmt.Errorf("remove stale runner socket: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".runner-socket-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on runner socket: %w", err)
	}
	lis.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	if err := os.Rename(tmpSock, abs); err != nil {
		lis.Close()
		return nil, fmt.Errorf("place runner socket: %w", err)
	}
	return &socketListener{UnixListener: lis, path: abs}, nil
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

// DialOptions are the gRPC options of a connection to the runner's socket.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(socketWindow), grpc.WithStaticConnWindowSize(socketWindow),
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
