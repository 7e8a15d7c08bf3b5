package storage_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// gatedPut is a CAS whose Put takes the first half KiB of a blob, says so
// on took, and takes the rest only once open is closed: a Write is then
// blocked handing its first request to the Put, where a live stream
// mostly is, as a slow disk or backend holds it.
type gatedPut struct {
	*storage.MemoryBlobStore
	took, open chan struct{}
}

func (s gatedPut) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	head := make([]byte, 512)
	if _, err := io.ReadFull(r, head); err != nil {
		return err
	}
	close(s.took)
	select {
	case <-s.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.MemoryBlobStore.Put(ctx, d, io.MultiReader(bytes.NewReader(head), r))
}

// TestAWriteBrokenWhileHandingBytesCanResume: a client whose connection
// breaks while the server hands its bytes to the Put resumes from what
// QueryWriteStatus says, and the blob is stored whole. The upload was
// aborted as the call ended: its prefix was lost, QueryWriteStatus said
// NOT_FOUND, and Bazel's resume at the offset it had was refused
// INVALID_ARGUMENT; a resume that came while the broken stream still held
// the upload was refused FAILED_PRECONDITION (outside probe: Bazel builds
// failed behind a proxy that reset connections).
func TestAWriteBrokenWhileHandingBytesCanResume(t *testing.T) {
	cas := gatedPut{MemoryBlobStore: storage.NewMemoryBlobStore(), took: make(chan struct{}), open: make(chan struct{})}
	callEnded := make(chan struct{}, 1)
	storage.OnHandingCallEnded(t, func() { callEnded <- struct{}{} })
	ts := startServer(t, storage.ServerOptions{CAS: cas, UploadIdleTimeout: time.Minute})
	data, d := randData(t, 4096)
	name := writeName(d)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := ts.bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bytestream.WriteRequest{ResourceName: name, WriteOffset: 0, Data: data[:2048]}); err != nil {
		t.Fatal(err)
	}
	<-cas.took
	cancel() // the connection breaks: the first 2 KiB are still being handed
	<-callEnded

	// The client resumes at once, from 0 bytes committed as far as it
	// knows: its resume waits for the broken stream to let the upload go.
	resumed := make(chan error, 1)
	go func() {
		resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, WriteOffset: 1024, Data: data[1024:], FinishWrite: true})
		if err == nil && resp.CommittedSize != d.SizeBytes() {
			err = status.Errorf(codes.Internal, "committed %d", resp.CommittedSize)
		}
		resumed <- err
	}()
	close(cas.open) // the Put takes the rest within callEndGrace
	if err := <-resumed; err != nil {
		t.Fatalf("a resume from 1 KiB of an upload whose stream broke with 2 KiB being handed: %v", err)
	}
	got, err := read(ts, &bytestream.ReadRequest{ResourceName: readName(d)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after the resumed write: %d bytes, %v", len(got), err)
	}
}

// TestAResumeBelowTheCommittedSizeSkipsWhatIsThere: a resume that starts
// below what the upload has committed (its QueryWriteStatus answered
// before the last bytes of the broken stream went in) sends bytes the
// server has: they are skipped, not refused. One past the committed size,
// or a later request not where the stream's previous one ended, is still
// INVALID_ARGUMENT.
func TestAResumeBelowTheCommittedSizeSkipsWhatIsThere(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{UploadIdleTimeout: time.Minute})
	data, d := randData(t, 3<<20)
	name := writeName(d)
	cancel := writePart(t, ts, name, data[:2<<20])
	cancel()
	waitParked := func(at int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			st, err := ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
			if err == nil && st.CommittedSize == at {
				if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, WriteOffset: at + 1, Data: []byte("x")}); status.Code(err) == codes.InvalidArgument {
					return // parked: a write past what it has is refused, and it stays
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the upload is not parked at %d bytes: %v", at, err)
			}
		}
	}
	waitParked(2 << 20)
	// Requests that do not follow each other are refused, and the upload
	// is kept.
	_, err := write(t, ts,
		&bytestream.WriteRequest{ResourceName: name, WriteOffset: 1 << 20, Data: data[1<<20 : 1<<20+10]},
		&bytestream.WriteRequest{ResourceName: name, WriteOffset: 1 << 20, Data: data[1<<20:]})
	wantStatus(t, err, codes.InvalidArgument)
	waitParked(2 << 20)
	resp, err := write(t, ts,
		&bytestream.WriteRequest{ResourceName: name, WriteOffset: 1 << 20, Data: data[1<<20 : 3<<19]},
		&bytestream.WriteRequest{ResourceName: name, WriteOffset: 3 << 19, Data: data[3<<19:], FinishWrite: true})
	if err != nil || resp.CommittedSize != d.SizeBytes() {
		t.Fatalf("a resume from 1 MiB of an upload that has 2 MiB: %v, %v", resp, err)
	}
	got, err := read(ts, &bytestream.ReadRequest{ResourceName: readName(d)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after the resumed write: %d bytes, %v", len(got), err)
	}
}

// TestANegativeWriteOffsetIsRefused: a Write whose write_offset is
// negative is INVALID_ARGUMENT, on its first request or a later one, and
// the server goes on: math.MinInt64 crashed the whole process (a slice
// index overflowed), and -1 skipped the data's first byte.
func TestANegativeWriteOffsetIsRefused(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{UploadIdleTimeout: time.Minute})
	data, d := randData(t, 1000)
	name := writeName(d)
	for _, off := range []int64{math.MinInt64, -1, math.MinInt64 + 1000} {
		_, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, WriteOffset: off, Data: data, FinishWrite: true})
		wantStatus(t, err, codes.InvalidArgument)
		_, err = write(t, ts,
			&bytestream.WriteRequest{ResourceName: name, WriteOffset: 0, Data: data[:500]},
			&bytestream.WriteRequest{ResourceName: name, WriteOffset: off, Data: data[500:], FinishWrite: true})
		wantStatus(t, err, codes.InvalidArgument)
	}
	if resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, Data: data, FinishWrite: true}); err != nil || resp.CommittedSize != d.SizeBytes() {
		t.Fatalf("a whole upload after the refusals: %v, %v", resp, err)
	}
}
