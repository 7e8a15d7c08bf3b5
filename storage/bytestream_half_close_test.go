package storage_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestByteStreamHalfCloseKeepsTheCommittedPrefix: bytestream.proto says a
// client that closes its side of a Write hears a WriteResponse, and that
// a Write is resumable. A stream closed without finish_write now gets the
// committed size, QueryWriteStatus reports it, and a Write from there
// completes the blob. Before, it got INVALID_ARGUMENT and its bytes were
// thrown away (QueryWriteStatus NOT_FOUND, the resume refused).
func TestByteStreamHalfCloseKeepsTheCommittedPrefix(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 0), UploadIdleTimeout: time.Minute})
	data, d := randData(t, 20_000)
	resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data[:12_000]})
	if err != nil {
		t.Fatalf("a Write closed without finish_write: %v", err)
	}
	if resp.CommittedSize != 12_000 {
		t.Fatalf("committed_size %d after 12000 bytes", resp.CommittedSize)
	}
	q, err := ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: writeName(d)})
	if err != nil || q.CommittedSize != 12_000 || q.Complete {
		t.Fatalf("QueryWriteStatus after the half-close: %v, %v", q, err)
	}
	resp, err = write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), WriteOffset: 12_000, Data: data[12_000:], FinishWrite: true})
	if err != nil || resp.CommittedSize != int64(len(data)) {
		t.Fatalf("resuming at 12000: %v, %v", resp, err)
	}
	got, err := read(ts, &bytestream.ReadRequest{ResourceName: readName(d)})
	if err != nil || string(got) != string(data) {
		t.Fatalf("reading the resumed blob: %d bytes, %v", len(got), err)
	}
}

// TestByteStreamEmptyWriteIsInvalid: a Write stream closed before its
// first request is INVALID_ARGUMENT, not UNKNOWN "EOF".
func TestByteStreamEmptyWriteIsInvalid(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 0)})
	_, err := write(t, ts)
	wantStatus(t, err, codes.InvalidArgument, "before its first request")
}

// TestByteStreamSilentWriteStreamEnds: a client that holds its Write
// stream open and sends nothing more has the stream ended after
// UploadIdleTimeout (DEADLINE_EXCEEDED), its upload kept for a resume.
// Before, such a stream held its ByteStream slot for as long as the client
// liked.
func TestByteStreamSilentWriteStreamEnds(t *testing.T) {
	ts, _, ended := startIdleUpload(t)
	data, d := idleUploadData(t)
	select {
	case err := <-ended:
		wantStatus(t, err, codes.DeadlineExceeded, "kept at 5000 bytes")
	case <-time.After(30 * time.Second):
		t.Fatal("a silent Write stream was still open after 30 s")
	}
	resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), WriteOffset: 5000, Data: data[5000:], FinishWrite: true})
	if err != nil || resp.CommittedSize != int64(len(data)) {
		t.Fatalf("resuming the upload of the silent stream: %v, %v", resp, err)
	}
}

// TestByteStreamEmptyWritesDoNotKeepAStreamOpen: requests with no data
// that do not finish the write are not activity: a stream sending only
// them ends after UploadIdleTimeout, its upload kept for a resume.
func TestByteStreamEmptyWritesDoNotKeepAStreamOpen(t *testing.T) {
	_, stream, ended := startIdleUpload(t)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.After(30 * time.Second); ; {
		select {
		case err := <-ended:
			wantStatus(t, err, codes.DeadlineExceeded, "kept at 5000 bytes")
			return
		case <-tick.C:
			_ = stream.Send(&bytestream.WriteRequest{WriteOffset: 5000}) // nothing; io.EOF once the server has ended the stream
		case <-deadline:
			t.Fatal("a stream sending only empty requests was still open after 30 s")
		}
	}
}

// startIdleUpload starts a server whose UploadIdleTimeout is 300 ms and
// a Write of idleUploadData's first 5,000 bytes that stays open; ended
// delivers how the server ends it.
func startIdleUpload(t *testing.T) (*testServer, bytestream.ByteStream_WriteClient, <-chan error) {
	t.Helper()
	ts := startServer(t, storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 0), UploadIdleTimeout: 300 * time.Millisecond})
	data, d := idleUploadData(t)
	stream, err := ts.bs.Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&bytestream.WriteRequest{ResourceName: writeName(d), Data: data[:5000]}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- stream.RecvMsg(new(bytestream.WriteResponse)) }() // the stream stays open
	return ts, stream, ended
}

// idleUploadData is the blob startIdleUpload uploads: the same bytes each
// call, so a test can finish the upload.
func idleUploadData(t *testing.T) ([]byte, digest.Digest) {
	t.Helper()
	data := bytes.Repeat([]byte("idle upload "), 20_000/12)
	return data, digest.FromBytes(repb.DigestFunction_SHA256, data)
}
