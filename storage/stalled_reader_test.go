package storage_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/h2test"
	"github.com/paddock-build/paddock/storage"
)

// stalledCalls makes n calls of method with request req on one bare
// HTTP/2 connection to addr whose receive window is 0: the server can send
// none of the responses. done is closed once the server closes the
// connection.
func stalledCalls(t *testing.T, addr, method string, req proto.Message, n int) (c *h2test.Conn, done <-chan struct{}) {
	t.Helper()
	c = h2test.Dial(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	msg := h2test.Message(req, 0)
	for range n {
		c.Call(t, method, msg, true)
	}
	return c, c.Serve()
}

// framing is room for what a response's gRPC and protobuf framing add to
// the blob bytes a call reserves.
const framing = 4 << 10

const batchReadBlobs = "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs"

// backlogServer serves storage over a listener that counts what its
// connections write (grpclimit.TrackSends), as the roles do, with limits
// for the test.
func backlogServer(t *testing.T, limits grpclimit.ConnLimits) (addr string, cas *gatedStore, mem *storage.MemoryBlobStore, client *grpc.ClientConn) {
	t.Helper()
	t.Cleanup(grpclimit.SetConnLimits(limits))
	mem = storage.NewMemoryBlobStore()
	cas = &gatedStore{BlobStore: mem, gated: map[digest.Digest]bool{}, entered: make(chan digest.Digest), release: make(chan struct{}), gets: map[digest.Digest]int{}}
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache(), MaxBatchTotalSizeBytes: 4 << 20}) // batches of the 3 MiB blobs
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpctest.Start(t, grpclimit.TrackSends(lis), srv.Register, append(srv.GRPCServerOptions(), grpclimit.New(0).ServerOptions()...)...)
	addr = lis.Addr().String()
	return addr, cas, mem, grpctest.Dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

func (s *gatedStore) count(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[d]
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestStalledReaderHoldsOnlyItsConnectionsBacklog: gRPC keeps a response
// in memory until the client reads it, and a client that announces a
// receive window of 0 never does. On such a connection, BatchReadBlobs
// calls for a 3 MiB blob read it only while the connection's backlog of
// unsent responses stays within 16 MiB: 5 of 40 (before, all 40, and 500
// took paddock up to 2.3 GB). Other connections are served meanwhile, and
// once the stalled connection has written nothing for StallTimeout the
// server closes it and its backlog is gone.
func TestStalledReaderHoldsOnlyItsConnectionsBacklog(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.StallTimeout = time.Hour
	addr, cas, mem, conn := backlogServer(t, limits)
	big := putString(t, mem, string(bytes.Repeat([]byte{'b'}, 3<<20)))
	stalledCalls(t, addr, batchReadBlobs, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}}, 40)
	waitFor(t, "5 stalled calls to read the blob", func() bool { return cas.count(big) >= 5 })
	// Another connection reads the same blob at once; the stalled calls
	// that wait have still not read it.
	resp, err := repb.NewContentAddressableStorageClient(conn).BatchReadBlobs(context.Background(), &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}})
	if err != nil || len(resp.Responses[0].Data) != 3<<20 {
		t.Fatalf("a reader on another connection: %v", err)
	}
	if n := cas.count(big) - 1; n != 5 {
		t.Errorf("%d stalled calls read the blob, want 5", n)
	}
	if b := grpclimit.SendBacklog(); b > 16<<20+framing {
		t.Errorf("send backlog %d bytes, more than one connection's 16 MiB", b)
	}
	limits.StallTimeout = 200 * time.Millisecond
	grpclimit.SetConnLimits(limits)
	waitFor(t, "the stalled connection's backlog to be dropped", func() bool { return grpclimit.SendBacklog() == 0 })
}

// TestATricklingReaderIsClosedAsStalled: a client that lets a few bytes
// of its replies through now and then is as stalled as one that lets none
// through: its connection is closed once it has read less than 64 KiB in
// StallTimeout, and its backlog is gone. Any write had counted as
// progress, and 17 such connections held the whole process's backlog for
// as long as they liked while every other client's reads waited.
func TestATricklingReaderIsClosedAsStalled(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.StallTimeout = 500 * time.Millisecond
	addr, _, mem, _ := backlogServer(t, limits)
	big := putString(t, mem, string(bytes.Repeat([]byte{'t'}, 3<<20)))
	c, closed := stalledCalls(t, addr, batchReadBlobs, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}}, 1)
	waitFor(t, "the reply to be queued", func() bool { return grpclimit.SendBacklog() > 2<<20 })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-closed:
				return
			case <-time.After(20 * time.Millisecond):
				c.WindowUpdate(1, 16) // 16 more bytes of the reply, 800 a second
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatalf("a connection reading 800 bytes a second of a 3 MiB reply is still open after 15 s (stall timeout %v)", limits.StallTimeout)
	}
	waitFor(t, "its backlog to be dropped", func() bool { return grpclimit.SendBacklog() == 0 })
}

// TestSendBacklogIsBoundedAcrossConnections: stalled connections together
// hold at most the process's backlog (8 MiB here): past it every call
// that would add to it waits, on any connection, until they are gone.
// ByteStream reads wait the same way as BatchReadBlobs.
func TestSendBacklogIsBoundedAcrossConnections(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.MaxBacklog, limits.StallTimeout = 8<<20, time.Hour
	addr, _, mem, conn := backlogServer(t, limits)
	big := putString(t, mem, string(bytes.Repeat([]byte{'c'}, 3<<20)))
	c1, _ := stalledCalls(t, addr, batchReadBlobs, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}}, 5)
	c2, _ := stalledCalls(t, addr, "/google.bytestream.ByteStream/Read", &bytestream.ReadRequest{ResourceName: "blobs/" + big.String()}, 5)
	// Two BatchReadBlobs responses (6 MiB) and a ByteStream chunk or two:
	// no further 3 MiB fits in the 8 MiB.
	waitFor(t, "the stalled calls to fill the backlog", func() bool { return grpclimit.SendBacklog() > 5<<20 })
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := repb.NewContentAddressableStorageClient(conn).BatchReadBlobs(short, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}})
	wantStatus(t, err, codes.DeadlineExceeded)
	if b := grpclimit.SendBacklog(); b > 8<<20+framing {
		t.Errorf("send backlog %d bytes, above the process's 8 MiB", b)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := repb.NewContentAddressableStorageClient(conn).BatchReadBlobs(context.Background(), &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{big.Proto()}}); err != nil {
		t.Fatalf("once the stalled connections closed: %v", err)
	}
}

// TestCancelledReadLeavesNoBacklog: gRPC drops what a reset stream had
// queued, which is then never written. A ByteStream read of an 8 MiB blob
// cancelled after its first message left about 300 KB counted as queued
// on its connection for good, and the connection, writing nothing more,
// was closed as stalled 30 s later with the client's other calls (its
// Execute streams). Once the reads end, the count is back to zero.
func TestCancelledReadLeavesNoBacklog(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.StallTimeout = time.Hour // the count must fall by itself, not by the connection's close
	_, _, mem, conn := backlogServer(t, limits)
	big := putString(t, mem, string(bytes.Repeat([]byte{'d'}, 8<<20)))
	bs := bytestream.NewByteStreamClient(conn)
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := bs.Read(ctx, &bytestream.ReadRequest{ResourceName: "blobs/" + big.String()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	waitFor(t, "the cancelled reads' backlog to be dropped", func() bool { return grpclimit.SendBacklog() == 0 })
}

// backlogWitness is a CAS whose readers check, at each read, that the
// bytes the server has read from it so far are counted in the send
// backlog: queued for a client, or in a chunk buffer whose room was
// reserved before it was filled. excess is the most they were past it.
type backlogWitness struct {
	storage.BlobStore
	mu     sync.Mutex
	read   int64
	excess int64
}

func (w *backlogWitness) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := w.BlobStore.Get(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{witnessReader{w, r}, r}, nil
}

type witnessReader struct {
	w *backlogWitness
	r io.Reader
}

func (r witnessReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	r.w.read += int64(n)
	r.w.excess = max(r.w.excess, r.w.read-grpclimit.SendBacklog())
	return n, err
}

func (w *backlogWitness) counts() (read, excess int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.read, w.excess
}

// TestStalledByteStreamReadsHoldOnlyCountedBuffers: a ByteStream read
// whose client does not read takes no chunk of the blob into memory
// without its room in the send backlog, which bounds what slow clients
// keep in the server. Before, each read filled its next 1 MiB buffer and
// then waited for room to send it, holding the buffer uncounted for as
// long as its client kept it waiting: thousands of slow readers held
// gigabytes. Here 4 reads of a 3 MiB blob on a connection that reads
// nothing each read 2 MiB (a chunk queued, the next one being handed to
// gRPC, both counted), and every byte read was counted when it was.
func TestStalledByteStreamReadsHoldOnlyCountedBuffers(t *testing.T) {
	limits := grpclimit.DefaultConnLimits()
	limits.StallTimeout = time.Hour
	t.Cleanup(grpclimit.SetConnLimits(limits))
	waitFor(t, "earlier tests' backlog to be gone", func() bool { return grpclimit.SendBacklog() == 0 })
	mem := storage.NewMemoryBlobStore()
	big := putString(t, mem, strings.Repeat("r", 3<<20))
	cas := &backlogWitness{BlobStore: mem}
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpctest.Start(t, grpclimit.TrackSends(lis), srv.Register, append(srv.GRPCServerOptions(), grpclimit.New(0).ServerOptions()...)...)
	const reads = 4
	stalledCalls(t, lis.Addr().String(), "/google.bytestream.ByteStream/Read", &bytestream.ReadRequest{ResourceName: "blobs/" + big.String()}, reads)
	waitFor(t, "each stalled read to read two chunks", func() bool {
		read, _ := cas.counts()
		return read >= reads*2<<20
	})
	if read, excess := cas.counts(); excess > reads*framing {
		t.Fatalf("the stalled reads read %d bytes of the blob, up to %d more than the send backlog counted", read, excess)
	}
}
