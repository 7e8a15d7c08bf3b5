package storage_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

func uploadName(i int, d digest.Digest) string {
	return fmt.Sprintf("inst/uploads/slots-%d/blobs/%s", i, d)
}

// ByteStream reads and uploads hold a slot each, out of MaxOpenStreams.
// Live streams holding every slot turn new ones away with
// RESOURCE_EXHAUSTED (a client with thousands of them once used up the
// process's open files); an upload parked by a broken stream gives its
// slot to a new stream rather than holding it for UploadIdleTimeout; and
// every way a stream ends frees its slot.
func TestByteStreamOpenStreamsAreBounded(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxOpenStreams: 3, UploadIdleTimeout: time.Hour})
	stored := "a blob stored before the streams open"
	sd := putString(t, ts.disk, stored)
	var names [3]string
	var cancels [3]context.CancelFunc
	for i := range names {
		data, d := randData(t, 1000)
		names[i] = uploadName(i, d)
		cancels[i] = writePart(t, ts, names[i], data[:100])
	}

	data, d := randData(t, 1000)
	_, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data, FinishWrite: true})
	wantStatus(t, err, codes.ResourceExhausted, "3 ByteStream reads and uploads")
	_, err = read(ts, &bytestream.ReadRequest{ResourceName: readName(sd)})
	wantStatus(t, err, codes.ResourceExhausted, "retry later")
	// A blob already stored takes no slot: its Write completes at once.
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(sd), Data: []byte(stored), FinishWrite: true}); err != nil {
		t.Fatalf("write of a stored blob at the bound: %v", err)
	}

	// Once the server sees upload 0's stream break, it is parked, and the
	// next new stream takes its slot.
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data, FinishWrite: true})
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("a new upload beside a parked one: %v", err)
	}
	_, err = ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: names[0]})
	wantStatus(t, err, codes.NotFound)
	for _, n := range names[1:] {
		if st, err := ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: n}); err != nil || st.CommittedSize != 100 {
			t.Fatalf("live upload %s after the parked one was dropped: %v, %v", n, st, err)
		}
	}
	if m := missing(t, ts.disk, d); m[d] {
		t.Fatal("the upload that took the parked one's slot was not stored")
	}

	// Reads, refused writes and failed reads each free their slot.
	for range 5 {
		if got, err := read(ts, &bytestream.ReadRequest{ResourceName: readName(sd)}); err != nil || string(got) != stored {
			t.Fatalf("read beside two live uploads: %v", err)
		}
		_, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(sha("expected")), Data: []byte("tampered"), FinishWrite: true})
		wantStatus(t, err, codes.InvalidArgument)
		_, err = read(ts, &bytestream.ReadRequest{ResourceName: readName(sha("never stored"))})
		wantStatus(t, err, codes.NotFound)
	}
	cancels[1]()
	cancels[2]()
	// With the two parked, three live uploads fit again: nothing leaked.
	for i := range 3 {
		data, d := randData(t, 1000)
		writePart(t, ts, uploadName(10+i, d), data[:100])
	}
}

// Many clients at once against a bound of 4: whole uploads, uploads broken
// off (parked, then dropped by the idle timer or for a new stream, or
// resumed), and reads. Every stream either works or is told
// RESOURCE_EXHAUSTED, nothing deadlocks, every upload that completed is
// stored whole, and at the end all four slots are free again.
func TestByteStreamSlotsUnderConcurrentUse(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxOpenStreams: 4, UploadIdleTimeout: 5 * time.Millisecond})
	stored := "read by every client"
	sd := putString(t, ts.disk, stored)
	var g errgroup.Group
	var mu sync.Mutex
	var completed []digest.Digest
	for c := range 16 {
		g.Go(func() error {
			for i := range 20 {
				data := fmt.Appendf(nil, "client %d upload %d", c, i)
				d := digest.FromBytes(repb.DigestFunction_SHA256, data)
				name := uploadName(c*100+i, d)
				var err error
				switch i % 4 {
				case 0: // whole
					_, err = write(t, ts, &bytestream.WriteRequest{ResourceName: name, Data: data, FinishWrite: true})
				case 1, 2: // broken off after a part, then resumed from what was committed
					err = breakThenResume(ts, name, data)
				case 3:
					var got []byte
					if got, err = read(ts, &bytestream.ReadRequest{ResourceName: readName(sd)}); err == nil && string(got) != stored {
						return fmt.Errorf("read %q", got)
					}
				}
				switch {
				case err == nil && i%4 != 3:
					mu.Lock()
					completed = append(completed, d)
					mu.Unlock()
				case err != nil && status.Code(err) != codes.ResourceExhausted:
					return fmt.Errorf("client %d op %d: %w", c, i, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(completed) == 0 {
		t.Fatal("no upload completed")
	}
	if m := missing(t, ts.disk, completed...); len(m) != 0 {
		t.Fatalf("%d uploads completed but are not stored", len(m))
	}
	for i := range 4 {
		data, d := randData(t, 1000)
		writePart(t, ts, uploadName(10_000+i, d), data[:100])
	}
}

// breakThenResume sends the first half of data on a stream it then
// breaks, and sends the rest on a new stream from the committed offset,
// as a client resumes; an upload dropped meanwhile starts again from 0.
func breakThenResume(ts *testServer, name string, data []byte) error {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := ts.bs.Write(ctx)
	if err != nil {
		cancel()
		return err
	}
	half := len(data) / 2
	err = stream.Send(&bytestream.WriteRequest{ResourceName: name, Data: data[:half]})
	cancel()
	if err != nil {
		return err
	}
	// Poll with a deadline, not a count: on a loaded machine the server
	// may take a while to see the broken stream and let go of the upload.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var offset int64
		if st, err := ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name}); err == nil {
			offset = st.CommittedSize
		}
		stream, err := ts.bs.Write(context.Background())
		if err != nil {
			return err
		}
		if err := stream.Send(&bytestream.WriteRequest{ResourceName: name, WriteOffset: offset, Data: data[offset:], FinishWrite: true}); err != nil && err != io.EOF {
			return err
		}
		_, err = stream.CloseAndRecv()
		switch status.Code(err) {
		case codes.FailedPrecondition, codes.InvalidArgument:
			continue // the broken stream still holds it, or it moved on meanwhile
		}
		return err
	}
	return fmt.Errorf("%s: never resumed", name)
}
