package compose_test

import (
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// node is a real storage server (disk CAS and action cache behind the
// REv2 services) on a loopback port, which a test can stop and start
// again on the same port and directory, and a client connection to it
// that lives across restarts, as a front's would.
type node struct {
	t    testing.TB
	dir  string
	addr string
	g    *grpc.Server
	srv  *storage.Server
	conn *grpc.ClientConn
}

func startNode(t testing.TB) *node {
	t.Helper()
	n := &node{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	n.start()
	t.Cleanup(n.stop) // registered first, so it runs once the connection is closed
	n.conn = grpctest.Dial(t, n.addr,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	return n
}

func (n *node) start() {
	n.t.Helper()
	disk, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: n.dir})
	if err != nil {
		n.t.Fatal(err)
	}
	ac, err := storage.NewDiskActionCache(n.dir, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	n.srv = storage.NewServer(storage.ServerOptions{CAS: disk, AC: ac, SkipCompletenessChecks: true})
	n.g = grpc.NewServer(n.srv.GRPCServerOptions()...)
	n.srv.Register(n.g)
	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		n.t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	// Serve returns when stop ends the server; g, as stop sets n.g to nil,
	// perhaps before this goroutine runs.
	g := n.g
	go func() { _ = g.Serve(lis) }()
}

// stop ends the server, cutting open streams, as a killed process would.
func (n *node) stop() {
	if n.g != nil {
		n.g.Stop()
		n.srv.Close()
		n.g = nil
	}
}

func (n *node) cas() storage.BlobStore {
	return storage.NewRemoteBlobStore(n.conn, storage.RemoteOptions{})
}

func (n *node) ac() storage.ActionCache { return storage.NewRemoteActionCache(n.conn) }

func newDisk(t testing.TB, maxBytes int64) *storage.DiskBlobStore {
	t.Helper()
	s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: t.TempDir(), MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newDiskAC(t testing.TB) storage.ActionCache {
	t.Helper()
	c, err := storage.NewDiskActionCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
