package storage_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// liarStore serves other bytes than it was given: damage rewrites a blob
// on every read, as a remote CAS with bit rot it does not check would.
type liarStore struct {
	*storage.MemoryBlobStore
	damage func([]byte) []byte
}

func (s liarStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := s.MemoryBlobStore.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	data = s.damage(data)
	return io.NopCloser(bytes.NewReader(data[min(offset, int64(len(data))):])), nil
}

// TestRemoteBlobStoreRefusesWhatTheRemoteGetsWrong: a remote CAS that
// serves a blob's bytes changed, cut short or run long fails every read
// of it through a RemoteBlobStore with DATA_LOSS, and a front serving that
// store never hands its own client the whole blob. The blob is two whole
// 1 MiB chunks: before, the front sent both and only then failed, so a
// client that stopped at the blob's size had all of the wrong bytes. A
// resumed read (an offset past the damage) fails too, as it does on a disk
// or S3 store: the bytes before the offset are read and hashed again.
func TestRemoteBlobStoreRefusesWhatTheRemoteGetsWrong(t *testing.T) {
	const size = 2 << 20
	cases := []struct {
		name   string
		damage func([]byte) []byte // nil: the remote is sound
	}{
		{"sound", nil},
		{"first byte flipped", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"last byte flipped", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"a byte short", func(b []byte) []byte { return b[:len(b)-1] }},
		{"a byte too many", func(b []byte) []byte { return append(b, 'x') }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, d := randData(t, size)
			small, ds := randData(t, 1000) // read in a batch
			mem := storage.NewMemoryBlobStore()
			if err := mem.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := mem.Put(context.Background(), ds, bytes.NewReader(small)); err != nil {
				t.Fatal(err)
			}
			var cas storage.BlobStore = mem
			if tc.damage != nil {
				cas = liarStore{mem, func(b []byte) []byte { return tc.damage(bytes.Clone(b)) }}
			}
			remoteSrv := startServer(t, storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache(), MaxBatchTotalSizeBytes: 64 << 10})
			remote := storage.NewRemoteBlobStore(remoteSrv.conn, storage.RemoteOptions{})
			front := startServer(t, storage.ServerOptions{CAS: remote, AC: storage.NewMemoryActionCache()})

			for _, r := range []struct {
				what   string
				d      digest.Digest
				want   []byte
				offset int64
			}{
				{"whole", d, data, 0},
				{"resumed at 1.5 MiB", d, data, 3 << 19},
				{"small, whole", ds, small, 0},
				{"small, resumed", ds, small, 500},
			} {
				got, err := storagetest.ReadAll(t, remote, r.d, r.offset)
				if tc.damage == nil {
					if err != nil || !bytes.Equal(got, r.want[r.offset:]) {
						t.Errorf("%s read of a sound remote's blob: %d bytes, %v", r.what, len(got), err)
					}
					continue
				}
				// A batch entry cut short is refused by the remote's
				// server itself (its read of the store ends early); any
				// other answer with OK is the RemoteBlobStore's to refuse.
				if code := status.Code(err); code != codes.DataLoss && (r.d != ds || code == codes.OK) {
					t.Errorf("%s read through the RemoteBlobStore: %d bytes, %v; want DATA_LOSS", r.what, len(got), err)
				}
			}

			got, err := read(front, &bytestream.ReadRequest{ResourceName: readName(d)})
			if tc.damage == nil {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("the front's read of a sound blob: %d bytes, %v", len(got), err)
				}
				return
			}
			if status.Code(err) != codes.DataLoss || len(got) >= size {
				t.Errorf("the front's client read %d of %d bytes, then %v; want DATA_LOSS before the whole blob", len(got), size, err)
			}
			// The last half MiB: refused before a byte went out, so
			// NOT_FOUND (unsentAsNotFound).
			got, err = read(front, &bytestream.ReadRequest{ResourceName: readName(d), ReadOffset: 3 << 19})
			if status.Code(err) != codes.NotFound || len(got) != 0 {
				t.Errorf("the front's resumed read: %d bytes, %v; want NOT_FOUND", len(got), err)
			}
		})
	}
}
