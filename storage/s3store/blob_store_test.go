package s3store_test

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %s", what, err, code)
	}
}

func TestBlobStore(t *testing.T) {
	b := startBucket(t)
	ctx := context.Background()

	// 12 MiB in 5 MiB parts: an upload of three parts, read back whole and
	// from offsets inside the first, second and last of them.
	t.Run("MultipartRoundTripAndRanges", func(t *testing.T) {
		c, prefix := b.client(t)
		s := s3store.NewBlobStore(c)
		data := storagetest.RandBytes(t, 12<<20)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 1, 7 << 20, 12<<20 - 1, 12 << 20} {
			got, err := storagetest.ReadAll(t, s, d, off)
			if err != nil || !bytes.Equal(got, data[off:]) {
				t.Fatalf("offset %d: %d bytes, %v", off, len(got), err)
			}
		}
		keys, uploads := b.objects(t, prefix)
		if want := prefix + "cas/sha256/" + d.Hash() + "-12582912"; len(keys) != 1 || keys[0] != want || len(uploads) != 0 {
			t.Fatalf("bucket holds %v and uploads %v, want only %s", keys, uploads, want)
		}
	})

	// A Put whose bytes do not match leaves neither an object nor an open
	// upload behind, for every way of not matching, small and multipart.
	t.Run("MismatchedPutLeavesNothing", func(t *testing.T) {
		c, prefix := b.client(t)
		s := s3store.NewBlobStore(c)
		big := storagetest.RandBytes(t, 11<<20)
		bigDigest := digest.FromBytes(repb.DigestFunction_SHA256, big)
		flipped := bytes.Clone(big)
		flipped[len(flipped)-1] ^= 1 // wrong only in the last byte of the last part
		small := []byte("right bytes")
		smallDigest := digest.FromBytes(repb.DigestFunction_SHA256, small)
		for name, tc := range map[string]struct {
			d    digest.Digest
			data []byte
		}{
			"small wrong bytes":   {smallDigest, []byte("wrong bytes")},
			"small too long":      {smallDigest, append(bytes.Clone(small), '!')},
			"large wrong last":    {bigDigest, flipped},
			"large too short":     {bigDigest, big[:len(big)-1]},
			"large short in part": {bigDigest, big[:6<<20]},
			"large too long":      {bigDigest, append(bytes.Clone(big), 0)},
		} {
			err := s.Put(ctx, tc.d, bytes.NewReader(tc.data))
			wantCode(t, err, codes.InvalidArgument, name)
		}
		if keys, uploads := b.objects(t, prefix); len(keys) != 0 || len(uploads) != 0 {
			t.Fatalf("mismatched Puts left objects %v and uploads %v", keys, uploads)
		}
	})

	t.Run("CorruptObjectIsDataLossAndRemoved", func(t *testing.T) {
		// A resumed read (offset past the damage) is caught too: no part
		// of a corrupt object is served.
		for _, tc := range []struct {
			name         string
			size, offset int
		}{{"small", 1000, 0}, {"multipart", 7 << 20, 0}, {"small resumed", 1000, 750}, {"multipart resumed", 7 << 20, 6 << 20}} {
			name, size := tc.name, tc.size
			c, prefix := b.client(t)
			s := s3store.NewBlobStore(c)
			data := storagetest.RandBytes(t, size)
			d := digest.FromBytes(repb.DigestFunction_SHA256, data)
			if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			// Damage the object behind the store's back: same size, one
			// byte in the middle changed.
			bad := bytes.Clone(data)
			bad[size/2] ^= 0xff
			key := prefix + "cas/sha256/" + d.Hash() + "-" + itoa(size)
			if _, err := b.srv.Client().PutObject(ctx, b.name, key, bytes.NewReader(bad), int64(size), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			r, err := s.Get(ctx, d, int64(tc.offset))
			if err != nil {
				t.Fatalf("%s: Get: %v", name, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			wantCode(t, err, codes.DataLoss, name+": reading a corrupt object")
			if len(got) >= size-tc.offset {
				t.Fatalf("%s: the corrupt blob was delivered whole", name)
			}
			if keys, _ := b.objects(t, prefix); len(keys) != 0 {
				t.Fatalf("%s: corrupt object still in the bucket: %v", name, keys)
			}
			if missing, err := s.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 1 {
				t.Fatalf("%s: FindMissing after removal = %v, %v", name, missing, err)
			}
		}
	})

	t.Run("WrongSizeObjectIsDataLossAndMissing", func(t *testing.T) {
		c, prefix := b.client(t)
		s := s3store.NewBlobStore(c)
		data := []byte("twelve bytes")
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		key := prefix + "cas/sha256/" + d.Hash() + "-12"
		if _, err := b.srv.Client().PutObject(ctx, b.name, key, bytes.NewReader(data[:5]), 5, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if missing, err := s.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 1 {
			t.Fatalf("FindMissing of a truncated object = %v, %v; want it missing", missing, err)
		}
		_, err := s.Get(ctx, d, 0)
		wantCode(t, err, codes.DataLoss, "Get of a truncated object")
		if keys, _ := b.objects(t, prefix); len(keys) != 0 {
			t.Fatalf("truncated object still in the bucket: %v", keys)
		}
	})

	t.Run("FindMissingManyAndDuplicates", func(t *testing.T) {
		c, _ := b.client(t)
		s := s3store.NewBlobStore(c)
		var ds, stored []digest.Digest
		for i := range 200 {
			data := []byte("blob " + itoa(i))
			d := digest.FromBytes(repb.DigestFunction_SHA256, data)
			if i%3 == 0 {
				if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				stored = append(stored, d)
			}
			ds = append(ds, d, d) // each twice
		}
		missing, err := s.FindMissing(ctx, ds)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(ds) - 2*len(stored); len(missing) != want {
			t.Fatalf("%d missing, want %d", len(missing), want)
		}
	})
}

// A stopped S3 server is UNAVAILABLE for every operation, and the store
// works again once it is back.
func TestServerDownIsUnavailable(t *testing.T) {
	b := startBucket(t)
	ctx := context.Background()
	c, _ := b.client(t)
	s, ac := s3store.NewBlobStore(c), s3store.NewActionCache(c)
	data := storagetest.RandBytes(t, 6<<20)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	b.srv.Stop()
	_, err := s.FindMissing(ctx, []digest.Digest{d})
	wantCode(t, err, codes.Unavailable, "FindMissing")
	_, err = s.Get(ctx, d, 0)
	wantCode(t, err, codes.Unavailable, "Get")
	err = s.Put(ctx, digest.FromBytes(repb.DigestFunction_SHA256, []byte("x")), bytes.NewReader([]byte("x")))
	wantCode(t, err, codes.Unavailable, "small Put")
	err = s.Put(ctx, d, bytes.NewReader(data))
	wantCode(t, err, codes.Unavailable, "multipart Put")
	_, err = ac.Get(ctx, "", d)
	wantCode(t, err, codes.Unavailable, "action cache Get")
	err = ac.Put(ctx, "", d, &repb.ActionResult{})
	wantCode(t, err, codes.Unavailable, "action cache Put")
	wantCode(t, c.CheckBucket(ctx), codes.Unavailable, "CheckBucket")

	b.srv.StartAgain(t)
	if got, err := storagetest.ReadAll(t, s, d, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after restart: %d bytes, %v", len(got), err)
	}
}

func TestCheckBucket(t *testing.T) {
	srv := seaweedtest.Start(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		bucket, secret string
		code           codes.Code
	}{
		"missing bucket": {"no-such-bucket", seaweedtest.SecretKey, codes.FailedPrecondition},
		"wrong secret":   {srv.CreateBucket(t, "there"), "not-the-secret", codes.PermissionDenied},
	} {
		c, err := s3store.New(s3store.Options{Endpoint: srv.Endpoint, Bucket: tc.bucket,
			AccessKeyID: seaweedtest.AccessKey, SecretAccessKey: tc.secret})
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckBucket(ctx)
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %s", name, err, tc.code)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
