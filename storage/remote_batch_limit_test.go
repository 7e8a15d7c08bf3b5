package storage_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// sizedBlob is a blob of n bytes that differ by seed.
func sizedBlob(n int, seed byte) (digest.Digest, []byte) {
	data := bytes.Repeat([]byte{seed, seed + 1, seed + 2}, n/3+1)[:n]
	return digest.FromBytes(repb.DigestFunction_SHA256, data), data
}

// A remote with a batch limit below 1 MiB (256 KiB here) takes blobs above
// it by ByteStream and below it in batches, through Put and Get alike: a
// fixed 1 MiB threshold sent a 600 kB blob as a batch, which the remote
// refused with INVALID_ARGUMENT (not retried by clients), and a blob just
// under the limit counts its digest and framing too.
func TestRemoteBlobStoreFitsTheRemotesBatchLimit(t *testing.T) {
	const limit = 256 << 10
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: limit})
	remote := storage.NewRemoteBlobStore(ts.conn, storage.RemoteOptions{InstanceName: "inst-x"})
	ctx := context.Background()
	for i, n := range []int{600_000, limit, limit - 10, 200_000, 1000} {
		d, data := sizedBlob(n, byte(i))
		if err := remote.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("Put of %d bytes: %v", n, err)
		}
		if got, err := storagetest.ReadAll(t, ts.disk, d, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("blob of %d bytes on the remote: %v", n, err)
		}
		if got, err := storagetest.ReadAll(t, remote, d, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get of %d bytes: %v", n, err)
		}
		if got, err := storagetest.ReadAll(t, remote, d, 100); err != nil || !bytes.Equal(got, data[100:]) {
			t.Fatalf("Get of %d bytes from offset 100: %v", n, err)
		}
	}
	if m := remote.MaxBatchBytes(); m <= 0 || m > limit {
		t.Errorf("MaxBatchBytes = %d, want within the remote's %d", m, limit)
	}
}

// Many small blobs, 600 kB together, and one above the limit, go through
// PutMany and GetMany against a remote with a 256 KiB limit: each batch
// fits, and the large blob goes by ByteStream.
func TestRemoteBatchesOfManyBlobsFitTheRemotesLimit(t *testing.T) {
	const limit = 256 << 10
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: limit})
	remote := storage.NewRemoteBlobStore(ts.conn, storage.RemoteOptions{})
	ctx := context.Background()
	blobs := map[digest.Digest][]byte{}
	var ds []digest.Digest
	for i := range 10 {
		d, data := sizedBlob(60_000, byte(10*i))
		blobs[d] = data
		ds = append(ds, d)
	}
	big, bigData := sizedBlob(300_000, 7)
	blobs[big] = bigData
	ds = append(ds, big)
	if err := remote.PutMany(ctx, blobs); err != nil {
		t.Fatalf("PutMany of %d blobs: %v", len(blobs), err)
	}
	for _, d := range ds {
		if _, err := storagetest.ReadAll(t, ts.disk, d, 0); err != nil {
			t.Fatalf("blob %s not on the remote: %v", d, err)
		}
	}
	absent, _ := sizedBlob(1000, 99)
	got, err := remote.GetMany(ctx, append(ds, absent))
	if err != nil {
		t.Fatalf("GetMany of %d blobs: %v", len(ds)+1, err)
	}
	if len(got) != len(ds) {
		t.Fatalf("GetMany returned %d blobs, want the %d stored", len(got), len(ds))
	}
	for _, d := range ds {
		if !bytes.Equal(got[d], blobs[d]) {
			t.Fatalf("GetMany: blob %s differs", d)
		}
	}
}

// A store made while its remote is down (a front starting before its
// backend) fails UNAVAILABLE, which clients retry, and asks for the
// remote's limit again once the remote is up: a 600 kB blob then goes by
// ByteStream to a remote with a 256 KiB limit.
func TestRemoteBlobStoreLearnsTheLimitOnceTheRemoteIsUp(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	retry := backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1, MaxDelay: 10 * time.Millisecond}
	conn := grpctest.Dial(t, addr, grpc.WithConnectParams(grpc.ConnectParams{Backoff: retry, MinConnectTimeout: time.Second}))
	remote := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{})
	ctx := context.Background()
	d, data := sizedBlob(600_000, 1)
	if err := remote.Put(ctx, d, bytes.NewReader(data)); status.Code(err) != codes.Unavailable {
		t.Fatalf("Put with the remote down: %v, want UNAVAILABLE", err)
	}

	if lis, err = net.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	disk := newDisk(t, t.TempDir(), 0)
	srv := storage.NewServer(storage.ServerOptions{CAS: disk, AC: storage.NewMemoryActionCache(), MaxBatchTotalSizeBytes: 256 << 10})
	t.Cleanup(srv.Close)
	grpctest.Start(t, lis, srv.Register, srv.GRPCServerOptions()...)
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatal("the connection did not come up")
		}
	}
	if err := remote.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put once the remote is up: %v", err)
	}
	if got, err := storagetest.ReadAll(t, remote, d, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get once the remote is up: %v", err)
	}
}

// A remote that does not answer GetCapabilities (UNIMPLEMENTED: not a
// conforming REv2 server, but a cache may be one) gets every blob by
// ByteStream, which has no size limit, through Put and PutMany alike, as
// long as the caller sets no bound of its own.
func TestRemoteWithoutCapabilitiesGetsEveryBlobByByteStream(t *testing.T) {
	noCaps := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == repb.Capabilities_GetCapabilities_FullMethodName {
			return nil, status.Error(codes.Unimplemented, "no capabilities here")
		}
		return h(ctx, req)
	})
	disk := newDisk(t, t.TempDir(), 0)
	srv := storage.NewServer(storage.ServerOptions{CAS: disk, AC: storage.NewMemoryActionCache(), MaxBatchTotalSizeBytes: 256 << 10})
	t.Cleanup(srv.Close)
	conn := grpctest.Serve(t, srv.Register, append(srv.GRPCServerOptions(), noCaps)...)
	remote := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{})
	ctx := context.Background()
	blobs := map[digest.Digest][]byte{}
	for i, n := range []int{600_000, 1000, 0} {
		d, data := sizedBlob(n, byte(i))
		if err := remote.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("Put of %d bytes: %v", n, err)
		}
		d, data = sizedBlob(n+1, byte(i))
		blobs[d] = data
	}
	if err := remote.PutMany(ctx, blobs); err != nil {
		t.Fatalf("PutMany: %v", err)
	}
	ds := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		ds = append(ds, d)
	}
	got, err := remote.GetMany(ctx, ds)
	if err != nil || len(got) != len(blobs) {
		t.Fatalf("GetMany: %d blobs, %v; want %d", len(got), err, len(blobs))
	}
	if m := remote.MaxBatchBytes(); m != 0 {
		t.Errorf("MaxBatchBytes = %d, want 0: no batches", m)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A blob declared near 2^63 bytes goes by ByteStream, which the remote
// refuses (short of its size), not as a batch: the batch's size sum wrapped
// negative, so Put read whatever a client streamed into memory (a front or
// scheduler grew by the bytes sent) and hashed it, or, at exactly 2^63-1,
// read nothing and said the data hashed to the empty blob.
func TestRemoteBlobStoreNeverBatchesHugeDeclaredSizes(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	remote := storage.NewRemoteBlobStore(ts.conn, storage.RemoteOptions{})
	for _, size := range []int64{math.MaxInt64, math.MaxInt64 - 11, math.MaxInt64 - 200} {
		d, err := digest.New(repb.DigestFunction_SHA256, strings.Repeat("ab", 32), size)
		if err != nil {
			t.Fatal(err)
		}
		err = remote.Put(t.Context(), d, io.LimitReader(zeros{}, 8<<20))
		if code := status.Code(err); code != codes.ResourceExhausted && code != codes.InvalidArgument {
			t.Errorf("size %d: Put = %v, want the remote's refusal", size, err)
		}
		if strings.Contains(status.Convert(err).Message(), "data hash") {
			t.Errorf("size %d: Put = %v; the data was hashed as a batch", size, err)
		}
	}
}
