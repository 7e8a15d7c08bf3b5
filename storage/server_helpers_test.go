package storage_test

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// testServer is a storage server on loopback with a disk backend, and a
// client connection to it.
type testServer struct {
	dir  string
	disk *storage.DiskBlobStore
	ac   storage.ActionCache
	conn *grpc.ClientConn
	cas  repb.ContentAddressableStorageClient
	bs   bytestream.ByteStreamClient
	acc  repb.ActionCacheClient
	caps repb.CapabilitiesClient
}

func newDisk(t testing.TB, dir string, maxBytes int64) *storage.DiskBlobStore {
	t.Helper()
	s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts the services over a fresh disk store unless opts
// names stores, and returns clients of them.
func startServer(t testing.TB, opts storage.ServerOptions) *testServer {
	t.Helper()
	ts := &testServer{dir: t.TempDir()}
	if opts.CAS == nil {
		ts.disk = newDisk(t, ts.dir, 0)
		opts.CAS = ts.disk
	}
	if opts.AC == nil {
		ac, err := storage.NewDiskActionCache(ts.dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts.AC = ac
	}
	ts.ac = opts.AC
	conn := grpctest.Dial(t, serveLoopback(t, opts),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	ts.conn = conn
	ts.cas = repb.NewContentAddressableStorageClient(conn)
	ts.bs = bytestream.NewByteStreamClient(conn)
	ts.acc = repb.NewActionCacheClient(conn)
	ts.caps = repb.NewCapabilitiesClient(conn)
	return ts
}

// diskStores are a disk CAS and a disk action cache, unbounded, in dir.
func diskStores(t testing.TB, dir string) (*storage.DiskBlobStore, *storage.DiskActionCache) {
	t.Helper()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := storage.NewDiskActionCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cas, ac
}

// serveLoopback serves opts on a loopback port until the test ends and
// returns its address.
func serveLoopback(t testing.TB, opts storage.ServerOptions) string {
	t.Helper()
	srv := storage.NewServer(opts)
	t.Cleanup(srv.Close) // registered first, so it runs once the gRPC server has stopped
	return grpctest.Listen(t, srv.Register, srv.GRPCServerOptions()...)
}
