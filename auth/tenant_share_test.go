package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// One tenant's open ByteStream streams take at most half of storage's
// slots (storage.ServerOptions.MaxOpenStreamsPerTenant), so the other
// tenants can still upload and read whatever it holds open. Over real TLS
// with tokens: team-a opens uploads and leaves them hanging until it is
// refused, naming the tenant; team-b then uploads and reads; and when
// team-a lets one stream go, its own parked upload makes room for its
// next one, not team-b's.
func TestOneTenantCannotHoldEveryStream(t *testing.T) {
	sf := startSecureFarmOpts(t, limitsPolicy(), secureOptions{farm: farmtest.Options{MaxOpenStreams: 4}})
	a, b := sf.dialByteStream(t, tokenA), sf.dialByteStream(t, tokenB)

	upload := func(bs bytestream.ByteStreamClient, instance string, i int, finish bool) (context.CancelFunc, error) {
		data := []byte(fmt.Sprintf("%s upload %d, long enough to be sent in two parts", instance, i))
		name := fmt.Sprintf("%s/uploads/00000000-0000-0000-0000-%012d/blobs/%s/%d", instance, i, digest.FromBytes(repb.DigestFunction_SHA256, data).Hash(), len(data))
		ctx, cancel := context.WithCancel(t.Context())
		ws, err := bs.Write(ctx)
		if err == nil {
			err = ws.Send(&bytestream.WriteRequest{ResourceName: name, Data: data[:10]})
		}
		if err == nil && finish {
			err = ws.Send(&bytestream.WriteRequest{WriteOffset: 10, Data: data[10:], FinishWrite: true})
		}
		if errors.Is(err, io.EOF) {
			// The server ended the stream; its status says why.
			err = ws.RecvMsg(&bytestream.WriteResponse{})
		}
		if err == nil && finish {
			_, err = ws.CloseAndRecv()
			cancel()
			return nil, err
		}
		if err != nil {
			cancel()
			return nil, err
		}
		// The slot is taken once storage has the first part; a refusal
		// ends the stream.
		ended := make(chan error, 1)
		go func() { ended <- ws.RecvMsg(&bytestream.WriteResponse{}) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case err := <-ended:
				cancel()
				return nil, err
			default:
			}
			st, err := bs.QueryWriteStatus(t.Context(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
			if err == nil && st.CommittedSize == 10 {
				return cancel, nil
			}
			if time.Now().After(deadline) {
				cancel()
				return nil, fmt.Errorf("upload %s: neither held nor refused after 10 s (%v)", name, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	var held []context.CancelFunc
	for i := range 2 {
		cancel, err := upload(a, "team-a", i, false)
		if err != nil {
			t.Fatalf("team-a's upload %d: %v", i, err)
		}
		held = append(held, cancel)
	}
	_, err := upload(a, "team-a", 2, false)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `tenant "team-a"`) {
		t.Fatalf("team-a's third open upload: %v; want RESOURCE_EXHAUSTED naming the tenant", err)
	}
	for i := range 2 {
		if _, err := upload(b, "team-b", i, true); err != nil {
			t.Fatalf("team-b's upload %d while team-a holds its share: %v", i, err)
		}
	}
	read, err := b.Read(t.Context(), bsReadOf("team-b", digest.FromBytes(repb.DigestFunction_SHA256, []byte("team-b upload 0, long enough to be sent in two parts"))))
	if err == nil {
		_, err = read.Recv()
	}
	if err != nil {
		t.Fatalf("team-b's read while team-a holds its share: %v", err)
	}
	cancel, err := upload(b, "team-b", 2, false)
	if err != nil {
		t.Fatalf("team-b's open upload while team-a holds its share: %v", err)
	}
	defer cancel()

	// team-a lets one stream go: it is parked, and its next upload takes
	// that slot.
	held[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = upload(a, "team-a", 3, true)
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("team-a's upload after it let one go: %v", err)
	}
	held[1]()
}

// One tenant's calls in progress, idle streams included, are bounded
// (Interceptors.LimitTenantCalls), so that they cannot take the whole of
// a server's bound on calls: team-a's third call is refused, naming the
// tenant, while team-b's go on; and when team-a ends a call, it may make
// another.
func TestOneTenantCannotHoldEveryCall(t *testing.T) {
	sf := startSecureFarmOpts(t, limitsPolicy(), secureOptions{tenantCalls: 2})
	a, b := sf.dial(t, tokenA, nil), sf.dial(t, tokenB, nil)
	cas := func(conn grpcConn, instance string) error {
		_, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(t.Context(),
			&repb.FindMissingBlobsRequest{InstanceName: instance, BlobDigests: []*repb.Digest{digestProtoOf("x")}})
		return err
	}
	// Two idle streams: opened, and not a message sent. The server starts
	// calls in its own order: a call of the loop below may overtake a
	// stream, which is then refused (it ends, and is opened again) while
	// the loop's call is counted.
	type idle struct {
		cancel context.CancelFunc
		ended  chan error
	}
	open := func() idle {
		ctx, cancel := context.WithCancel(t.Context())
		ws, err := bytestream.NewByteStreamClient(a).Write(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := idle{cancel, make(chan error, 1)}
		go func() { s.ended <- ws.RecvMsg(&bytestream.WriteResponse{}) }()
		return s
	}
	streams := []idle{open(), open()}
	defer func() {
		for _, s := range streams {
			s.cancel()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	err := cas(a, "team-a")
	for err == nil && time.Now().Before(deadline) {
		for i, s := range streams {
			select {
			case <-s.ended:
				s.cancel()
				streams[i] = open()
			default:
			}
		}
		time.Sleep(5 * time.Millisecond)
		err = cas(a, "team-a")
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `tenant "team-a"`) {
		t.Fatalf("team-a's call beside two open streams: %v; want RESOURCE_EXHAUSTED naming the tenant", err)
	}
	for range 3 {
		if err := cas(b, "team-b"); err != nil {
			t.Fatalf("team-b's call while team-a holds its share: %v", err)
		}
	}
	streams[0].cancel()
	deadline = time.Now().Add(10 * time.Second)
	for err = cas(a, "team-a"); err != nil && time.Now().Before(deadline); err = cas(a, "team-a") {
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("team-a's call after it ended a stream: %v", err)
	}
}

func digestProtoOf(s string) *repb.Digest {
	return digest.FromBytes(repb.DigestFunction_SHA256, []byte(s)).Proto()
}

// The public methods (health), which need no credentials, have a bound of
// their own on calls in progress, within the tenants' share: before,
// anyone who could reach the port held the server's whole bound with idle
// health Watch streams, and every tenant's calls were refused.
func TestPublicCallsHaveABoundOfTheirOwn(t *testing.T) {
	sf := startSecureFarmOpts(t, limitsPolicy(), secureOptions{tenantCalls: 2})
	anonymous := healthpb.NewHealthClient(sf.dial(t, "", nil))
	watch := func() error {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		w, err := anonymous.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv() // the first status: the call is counted
		}
		return err
	}
	for i := range 2 {
		if err := watch(); err != nil {
			t.Fatalf("public Watch %d within the bound: %v", i, err)
		}
	}
	if err := watch(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "public methods") {
		t.Fatalf("a third public Watch: %v; want RESOURCE_EXHAUSTED naming the public methods", err)
	}
	b := sf.dial(t, tokenB, nil)
	if _, err := repb.NewContentAddressableStorageClient(b).FindMissingBlobs(t.Context(),
		&repb.FindMissingBlobsRequest{InstanceName: "team-b", BlobDigests: []*repb.Digest{digestProtoOf("x")}}); err != nil {
		t.Fatalf("team-b's call while the public methods are at their bound: %v", err)
	}
	if _, err := anonymous.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a health Check (quick, never refused): %v", err)
	}
}
