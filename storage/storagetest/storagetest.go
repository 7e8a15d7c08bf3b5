// Package storagetest is the conformance suite every storage backend must
// pass: one function per interface, a constructor in, the same checks out.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// RandBytes is n random bytes: blob contents no two tests share, for this
// suite and for backends' own tests.
func RandBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, s storage.BlobStore, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", d, err)
	}
	return d
}

// ReadAll reads a blob whole, to EOF.
func ReadAll(t *testing.T, s storage.BlobStore, d digest.Digest, offset int64) ([]byte, error) {
	t.Helper()
	r, err := s.Get(context.Background(), d, offset)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %s", what, err, code)
	}
}

func isMissing(t *testing.T, s storage.BlobStore, d digest.Digest) bool {
	t.Helper()
	missing, err := s.FindMissing(context.Background(), []digest.Digest{d})
	if err != nil {
		t.Fatalf("FindMissing: %v", err)
	}
	return len(missing) == 1
}

// TestBlobStore runs the BlobStore conformance checks on stores made by
// newStore (a fresh, empty store per call).
func TestBlobStore(t *testing.T, newStore func(t *testing.T) storage.BlobStore) {
	ctx := context.Background()
	t.Run("EmptyBlobAlwaysPresent", func(t *testing.T) {
		s := newStore(t)
		for _, fn := range digest.Supported {
			e := digest.Empty(fn)
			if isMissing(t, s, e) {
				t.Fatalf("%s: empty blob reported missing", fn)
			}
			b, err := ReadAll(t, s, e, 0)
			if err != nil || len(b) != 0 {
				t.Fatalf("%s: read empty blob: %q, %v", fn, b, err)
			}
		}
	})
	t.Run("PutGetRoundTrip", func(t *testing.T) {
		s := newStore(t)
		for _, size := range []int{1, 1000, 3 << 20} { // 3 MiB: remote stores stream it
			data := RandBytes(t, size)
			d := put(t, s, data)
			got, err := ReadAll(t, s, d, 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d: read back %d bytes, err %v", size, len(got), err)
			}
		}
	})
	t.Run("OtherDigestFunctions", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(t, 4096)
		for _, fn := range digest.Supported {
			d := digest.FromBytes(fn, data)
			if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatalf("%s: Put: %v", fn, err)
			}
			if got, err := ReadAll(t, s, d, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: read back: %v", fn, err)
			}
		}
	})
	t.Run("FindMissingKeepsOrder", func(t *testing.T) {
		s := newStore(t)
		present := put(t, s, []byte("present"))
		a := digest.FromBytes(repb.DigestFunction_SHA256, []byte("a"))
		b := digest.FromBytes(repb.DigestFunction_SHA256, []byte("b"))
		missing, err := s.FindMissing(ctx, []digest.Digest{b, present, a})
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 2 || missing[0] != b || missing[1] != a {
			t.Fatalf("FindMissing = %v, want [%s %s]", missing, b, a)
		}
	})
	t.Run("SameHashOtherSizeIsMissing", func(t *testing.T) {
		s := newStore(t)
		d := put(t, s, []byte("sized"))
		other, _ := digest.New(d.Function(), d.Hash(), d.SizeBytes()+1)
		if !isMissing(t, s, other) {
			t.Fatal("digest with the right hash and a wrong size reported present")
		}
	})
	testBlobStoreReadsAndWrites(t, newStore)
}

// testBlobStoreReadsAndWrites is the rest of TestBlobStore: offsets, bad
// uploads, concurrency.
func testBlobStoreReadsAndWrites(t *testing.T, newStore func(t *testing.T) storage.BlobStore) {
	ctx := context.Background()
	t.Run("GetOffset", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(t, 10000)
		d := put(t, s, data)
		for _, off := range []int64{0, 1, 9999, 10000} {
			got, err := ReadAll(t, s, d, off)
			if err != nil || !bytes.Equal(got, data[off:]) {
				t.Fatalf("offset %d: got %d bytes, err %v", off, len(got), err)
			}
		}
		_, err := s.Get(ctx, d, 10001)
		wantCode(t, err, codes.OutOfRange, "offset past the end")
	})
	t.Run("GetMissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Get(ctx, digest.FromBytes(repb.DigestFunction_SHA256, []byte("never stored")), 0)
		wantCode(t, err, codes.NotFound, "Get of a missing blob")
	})
	t.Run("PutMismatchStoresNothing", func(t *testing.T) {
		s := newStore(t)
		for name, tc := range map[string]struct {
			d    digest.Digest
			data []byte
		}{
			"wrong bytes": {digest.FromBytes(repb.DigestFunction_SHA256, []byte("right")), []byte("wrong")},
			"too short":   {digest.FromBytes(repb.DigestFunction_SHA256, []byte("right!")), []byte("right")},
			"too long":    {digest.FromBytes(repb.DigestFunction_SHA256, []byte("right")), []byte("right!")},
			"large wrong": {digest.FromBytes(repb.DigestFunction_SHA256, make([]byte, 3<<20)), RandBytes(t, 3<<20)},
		} {
			err := s.Put(ctx, tc.d, bytes.NewReader(tc.data))
			wantCode(t, err, codes.InvalidArgument, name)
			if !isMissing(t, s, tc.d) {
				t.Fatalf("%s: mismatched blob was stored", name)
			}
		}
	})
	t.Run("PutReaderErrorStoresNothing", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(t, 2<<20)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		r := io.MultiReader(bytes.NewReader(data[:1<<20]), errReader{})
		if err := s.Put(ctx, d, r); err == nil {
			t.Fatal("Put succeeded though its reader failed")
		}
		if !isMissing(t, s, d) {
			t.Fatal("half-written blob is visible")
		}
	})
	t.Run("ConcurrentPutsOfOneBlob", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(t, 1<<20)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Put(ctx, d, bytes.NewReader(data))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		if got, err := ReadAll(t, s, d, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back after concurrent writes: %v", err)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

// TestActionCache runs the ActionCache conformance checks.
func TestActionCache(t *testing.T, newCache func(t *testing.T) storage.ActionCache) {
	ctx := context.Background()
	action := digest.FromBytes(repb.DigestFunction_SHA256, []byte("action"))
	// The result references no blobs: a remote cache checks completeness
	// against its CAS, which is not part of this contract. Nor does it
	// carry inlined contents, which a remote cache's server drops (it
	// inlines from the CAS, on request only).
	result := &repb.ActionResult{
		ExitCode:          3,
		OutputSymlinks:    []*repb.OutputSymlink{{Path: "out/link", Target: "../in"}},
		ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: "w1"},
	}
	t.Run("MissingIsNotFound", func(t *testing.T) {
		c := newCache(t)
		_, err := c.Get(ctx, "", action)
		wantCode(t, err, codes.NotFound, "Get of an absent entry")
	})
	t.Run("RoundTripAndOverwrite", func(t *testing.T) {
		c := newCache(t)
		if err := c.Put(ctx, "main", action, result); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(ctx, "main", action)
		if err != nil || !proto.Equal(got, result) {
			t.Fatalf("Get = %v, %v; want %v", got, err, result)
		}
		second := &repb.ActionResult{ExitCode: 0}
		if err := c.Put(ctx, "main", action, second); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Get(ctx, "main", action); err != nil || !proto.Equal(got, second) {
			t.Fatalf("after overwrite Get = %v, %v", got, err)
		}
	})
	t.Run("InstancesArePartitioned", func(t *testing.T) {
		c := newCache(t)
		if err := c.Put(ctx, "tenant-a", action, result); err != nil {
			t.Fatal(err)
		}
		for _, other := range []string{"", "tenant-b", "tenant-a/sub", "tenant"} {
			_, err := c.Get(ctx, other, action)
			wantCode(t, err, codes.NotFound, "Get from instance "+other)
		}
	})
	t.Run("ResultIsACopy", func(t *testing.T) {
		c := newCache(t)
		r := proto.Clone(result).(*repb.ActionResult)
		if err := c.Put(ctx, "", action, r); err != nil {
			t.Fatal(err)
		}
		r.ExitCode = 99
		got, err := c.Get(ctx, "", action)
		if err != nil || got.ExitCode != result.ExitCode {
			t.Fatalf("stored result changed with the caller's copy: %v, %v", got, err)
		}
	})
}
