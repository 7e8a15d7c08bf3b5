package compose_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// diskAt is a disk store in dir, so that a test can damage its files.
func diskAt(t testing.TB, dir string) *storage.DiskBlobStore {
	t.Helper()
	s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flipByte damages the file of d in the disk store under dir, as bit rot
// would: same size, one bit changed at offset at.
func flipByte(t testing.TB, dir string, d digest.Digest, at int) {
	t.Helper()
	p := filepath.Join(dir, "cas", "sha256", d.Hash()[:2], d.Hash())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 1
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// cutStore is a side killed in the middle of a stream: its readers fail
// with UNAVAILABLE once they have served the blob up to byte cutAt.
type cutStore struct {
	storage.BlobStore
	cutAt int64
}

func (s cutStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := s.BlobStore.Get(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	return &cutReader{ReadCloser: r, left: s.cutAt - offset}, nil
}

type cutReader struct {
	io.ReadCloser
	left int64
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, status.Error(codes.Unavailable, "connection reset")
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

// A read that fails over in the middle of a stream never delivers the
// first side's corrupt bytes with OK: the bytes it served are checked
// against the second side's copy. Corruption the first side never served
// (past the failover point) does not fail the read.
func TestMirroredFailoverChecksTheBytesAlreadyServed(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	const cutAt = 1 << 20
	for _, tc := range []struct {
		name      string
		flipAt    int // -1: no damage
		offset    int64
		wantCode  codes.Code
		wantBytes bool
	}{
		{"sound", -1, 0, codes.OK, true},
		{"sound from an offset", -1, 1000, codes.OK, true},
		{"corrupt before the cut", 100, 0, codes.DataLoss, false},
		{"corrupt before the cut, read from an offset", 5000, 1000, codes.DataLoss, false},
		{"corrupt after the cut", cutAt + 100, 0, codes.OK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirA := t.TempDir()
			a, b := diskAt(t, dirA), newDisk(t, 0)
			m := compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: cutStore{a, cutAt}},
				compose.Mirror{Name: "b", Store: b}, newRepairer(t), nil)
			d := putBytes(t, m, data)
			if tc.flipAt >= 0 {
				flipByte(t, dirA, d, tc.flipAt)
			}
			r, err := m.Get(context.Background(), d, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("read across the failover: %d bytes, %v; want %v", len(got), err, tc.wantCode)
			}
			if tc.wantBytes && !bytes.Equal(got, data[tc.offset:]) {
				t.Fatalf("read across the failover: %d bytes, not the blob's", len(got))
			}
		})
	}
}
