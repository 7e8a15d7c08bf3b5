package storage_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestCorruptBlobNotYetSentIsNotFound: a blob found corrupt at rest
// before any of its bytes reached the client is NOT_FOUND, naming the
// corruption, in every read a client makes: a ByteStream Read, a
// BatchReadBlobs entry, and GetActionResult inlining it (a cache miss).
// The store has removed it, and Bazel recovers from NOT_FOUND (it runs
// the action again); on DATA_LOSS it failed the build
// (e2e/TestBazelRemoteExecution). A read that has sent part of the blob
// when the damage is found still ends with DATA_LOSS.
func TestCorruptBlobNotYetSentIsNotFound(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	damage := func(d digest.Digest) {
		corruptFile(t, ts.dir, d, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	}
	wantNotFound := func(what string, code codes.Code, msg string) {
		t.Helper()
		if code != codes.NotFound || !strings.Contains(msg, "corrupt") {
			t.Errorf("%s of a corrupt blob: %v %q; want NOT_FOUND naming the corruption", what, code, msg)
		}
	}

	small := putString(t, ts.disk, strings.Repeat("s", 100))
	damage(small)
	got, err := read(ts, &bytestream.ReadRequest{ResourceName: readName(small)})
	wantNotFound("ByteStream Read", status.Code(err), status.Convert(err).Message())
	if len(got) != 0 {
		t.Errorf("the read sent %d bytes", len(got))
	}
	if m := missing(t, ts.disk, small); !m[small] {
		t.Error("the corrupt blob is still stored")
	}

	batched := putString(t, ts.disk, strings.Repeat("b", 100))
	damage(batched)
	resp, err := ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{InstanceName: "inst", Digests: []*repb.Digest{batched.Proto()}})
	if err != nil || len(resp.Responses) != 1 {
		t.Fatalf("BatchReadBlobs: %v %v", resp, err)
	}
	wantNotFound("BatchReadBlobs", codes.Code(resp.Responses[0].Status.GetCode()), resp.Responses[0].Status.GetMessage())

	stdout := putString(t, ts.disk, strings.Repeat("o", 100))
	action := sha("an action")
	if err := ts.ac.Put(ctx, "inst", action, &repb.ActionResult{StdoutDigest: stdout.Proto()}); err != nil {
		t.Fatal(err)
	}
	damage(stdout)
	_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "inst", ActionDigest: action.Proto(), InlineStdout: true})
	wantNotFound("GetActionResult inlining stdout", status.Code(err), status.Convert(err).Message())

	large := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB: whole chunks go out first
	ld := digest.FromBytes(repb.DigestFunction_SHA256, large)
	if err := ts.disk.Put(ctx, ld, bytes.NewReader(large)); err != nil {
		t.Fatal(err)
	}
	damage(ld)
	got, err = read(ts, &bytestream.ReadRequest{ResourceName: readName(ld)})
	if status.Code(err) != codes.DataLoss || len(got) == 0 || len(got) >= len(large) {
		t.Errorf("read of a large corrupt blob: %d of %d bytes, then %v; want DATA_LOSS after part of it", len(got), len(large), err)
	}
}
