package worker_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/worker"
)

// entryFaults answers the entry of one blob (down) of BatchReadBlobs and
// BatchUpdateBlobs with code, in the first n calls that name it (all of
// them if n < 0), as a storage front does for a blob whose shard is down:
// the call is OK and the entry is not, and the blob is neither read nor
// stored. It records the hashes each call named.
type entryFaults struct {
	down digest.Digest
	code codes.Code
	n    int
	// onCall, if set, is called with the number of each call that names
	// down, from 1.
	onCall func(int)

	mu     sync.Mutex
	calls  [][]string
	faults int
}

func (f *entryFaults) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch q := req.(type) {
	case *repb.BatchReadBlobsRequest:
		var hashes []string
		for _, d := range q.Digests {
			hashes = append(hashes, d.Hash)
		}
		fault := f.record(hashes)
		resp, err := h(ctx, req)
		if err != nil || !fault {
			return resp, err
		}
		for _, e := range resp.(*repb.BatchReadBlobsResponse).Responses {
			if e.Digest.GetHash() == f.down.Hash() {
				e.Data, e.Compressor, e.Status = nil, repb.Compressor_IDENTITY, f.status()
			}
		}
		return resp, nil
	case *repb.BatchUpdateBlobsRequest:
		var hashes []string
		kept := &repb.BatchUpdateBlobsRequest{InstanceName: q.InstanceName, DigestFunction: q.DigestFunction}
		for _, r := range q.Requests {
			hashes = append(hashes, r.Digest.GetHash())
			if r.Digest.GetHash() != f.down.Hash() {
				kept.Requests = append(kept.Requests, r)
			}
		}
		if !f.record(hashes) {
			return h(ctx, req)
		}
		resp, err := h(ctx, kept)
		if err != nil {
			return nil, err
		}
		r := resp.(*repb.BatchUpdateBlobsResponse)
		r.Responses = append(r.Responses, &repb.BatchUpdateBlobsResponse_Response{Digest: f.down.Proto(), Status: f.status()})
		return r, nil
	}
	return h(ctx, req)
}

// record records a call naming hashes, and tells whether to fault it.
func (f *entryFaults) record(hashes []string) bool {
	f.mu.Lock()
	f.calls = append(f.calls, hashes)
	named := slices.Contains(hashes, f.down.Hash())
	fault := named && (f.n < 0 || f.faults < f.n)
	if fault {
		f.faults++
	}
	n := 0
	for _, c := range f.calls {
		if slices.Contains(c, f.down.Hash()) {
			n++
		}
	}
	f.mu.Unlock()
	if named && f.onCall != nil {
		f.onCall(n)
	}
	return fault
}

func (f *entryFaults) status() *rpcstatus.Status {
	return &rpcstatus.Status{Code: int32(f.code), Message: `injected: storage backend "s1" is unavailable; retry later`}
}

func (f *entryFaults) recorded() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func blobDigest(data string) digest.Digest { return digest.FromBytes(sha256, []byte(data)) }

// storeBlobs puts each of datas in s's CAS and returns their digests.
func storeBlobs(t *testing.T, s *restartableStorage, datas ...string) []digest.Digest {
	t.Helper()
	var ds []digest.Digest
	for _, data := range datas {
		d := blobDigest(data)
		if err := s.cas.Put(context.Background(), d, strings.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

// A BatchReadBlobs answered OK whose entry for one blob is UNAVAILABLE (a
// front whose shard holding it is down) is waited for like a call
// answered UNAVAILABLE: that entry alone is asked again, the blobs
// already read and the one NOT_FOUND are not, and the caller gets every
// blob there is, with its bytes.
func TestStorageWaitRereadsUnavailableEntries(t *testing.T) {
	f := &entryFaults{down: blobDigest("a blob on a shard that is down"), code: codes.Unavailable, n: 2}
	s := newRestartableStorage(t, grpc.UnaryInterceptor(f.intercept))
	ds := storeBlobs(t, s, "a blob on a shard that is up", "a blob on a shard that is down")
	up, down := ds[0], ds[1]
	missing := blobDigest("a blob nobody stored")
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
	got, err := cas.GetMany(context.Background(), []digest.Digest{up, down, missing})
	if err != nil {
		t.Fatalf("GetMany with a shard down for two tries: %v", err)
	}
	if len(got) != 2 || string(got[up]) != "a blob on a shard that is up" || string(got[down]) != "a blob on a shard that is down" {
		t.Fatalf("GetMany returned %q, want the two stored blobs", got)
	}
	calls := f.recorded()
	if len(calls) != 3 || len(calls[0]) != 3 || !slices.Equal(calls[1], []string{down.Hash()}) || !slices.Equal(calls[2], []string{down.Hash()}) {
		t.Errorf("BatchReadBlobs calls asked for %v; want all three, then the unavailable one alone, twice", calls)
	}
}

// Only an UNAVAILABLE entry is asked again: an entry answered NOT_FOUND,
// INVALID_ARGUMENT or RESOURCE_EXHAUSTED has been answered, and reaches
// the caller at once, after one call.
func TestStorageWaitRetriesOnlyUnavailableEntries(t *testing.T) {
	for _, tc := range []struct {
		code  codes.Code
		calls int
	}{{codes.Unavailable, 2}, {codes.NotFound, 1}, {codes.InvalidArgument, 1}, {codes.ResourceExhausted, 1}} {
		t.Run(tc.code.String(), func(t *testing.T) {
			f := &entryFaults{down: blobDigest("a small blob"), code: tc.code, n: 1}
			s := newRestartableStorage(t, grpc.UnaryInterceptor(f.intercept))
			storeBlobs(t, s, "a small blob")
			cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
			got, err := storagetest.ReadAll(t, cas, f.down, 0)
			want := tc.code
			if want == codes.Unavailable {
				want = codes.OK // answered on the second try
			}
			if status.Code(err) != want || (err == nil && string(got) != "a small blob") {
				t.Fatalf("Get after an entry %v: %q, %v; want %v", tc.code, got, err, want)
			}
			if n := len(f.recorded()); n != tc.calls {
				t.Errorf("%d BatchReadBlobs calls after an entry %v, want %d", n, tc.code, tc.calls)
			}
		})
	}
}

// A BatchUpdateBlobs whose entry for one blob is UNAVAILABLE sends that
// blob again, alone, until it is stored; the blob stored at once is not
// sent again.
func TestStorageWaitResendsUnavailableUpdateEntries(t *testing.T) {
	f := &entryFaults{down: blobDigest("an output for a shard that is down"), code: codes.Unavailable, n: 2}
	s := newRestartableStorage(t, grpc.UnaryInterceptor(f.intercept))
	blobs := map[digest.Digest][]byte{}
	var ds []digest.Digest
	for _, data := range []string{"an output for a shard that is up", "an output for a shard that is down"} {
		d := blobDigest(data)
		blobs[d] = []byte(data)
		ds = append(ds, d)
	}
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
	if err := cas.PutMany(context.Background(), blobs); err != nil {
		t.Fatalf("PutMany with a shard down for two tries: %v", err)
	}
	for d, data := range blobs {
		if got, err := storagetest.ReadAll(t, s.cas, d, 0); err != nil || !bytes.Equal(got, data) {
			t.Errorf("stored %q for %q: %v", got, data, err)
		}
	}
	calls := f.recorded()
	if len(calls) != 3 || len(calls[0]) != 2 || !slices.Equal(calls[1], []string{ds[1].Hash()}) || !slices.Equal(calls[2], []string{ds[1].Hash()}) {
		t.Errorf("BatchUpdateBlobs calls sent %v; want both, then the unavailable one alone, twice", calls)
	}
}

// An entry that stays UNAVAILABLE fails after the wait and not before,
// UNAVAILABLE, saying how long the worker waited.
func TestStorageWaitGivesUpOnAnEntryAfterTheWait(t *testing.T) {
	f := &entryFaults{down: blobDigest("a blob on a shard that stays down"), code: codes.Unavailable, n: -1}
	s := newRestartableStorage(t, grpc.UnaryInterceptor(f.intercept))
	storeBlobs(t, s, "a blob on a shard that stays down")
	const wait = 300 * time.Millisecond
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{Wait: wait}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
	checkGivesUpAfter(t, wait, "Get", func() error {
		_, err := storagetest.ReadAll(t, cas, f.down, 0)
		return err
	})
	if n := len(f.recorded()); n < 2 {
		t.Errorf("%d BatchReadBlobs calls, want more than one", n)
	}
}

// checkGivesUpAfter runs call (named what) against a storage that stays
// down, through a storage wait of wait, and checks that it fails
// UNAVAILABLE saying how long the worker waited, and not before the wait.
func checkGivesUpAfter(t *testing.T, wait time.Duration, what string, call func() error) {
	t.Helper()
	start := time.Now()
	err := call()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "storage still unavailable after waiting "+wait.String()) {
		t.Fatalf("%s with the shard gone: %v, want UNAVAILABLE after waiting", what, err)
	}
	if waited := time.Since(start); waited < wait {
		t.Errorf("gave up after %s, before the wait of %s", waited, wait)
	}
}

// A caller whose context ends while its call waits for an entry gets
// CANCELED at once, not after the wait.
func TestStorageWaitForAnEntryEndsWithItsContext(t *testing.T) {
	second := make(chan struct{})
	f := &entryFaults{down: blobDigest("a blob on a shard that stays down"), code: codes.Unavailable, n: -1, onCall: func(n int) {
		if n == 2 {
			close(second)
		}
	}}
	s := newRestartableStorage(t, grpc.UnaryInterceptor(f.intercept))
	storeBlobs(t, s, "a blob on a shard that stays down")
	cas := storage.NewRemoteBlobStore(s.dial(worker.StorageWaitOptions{}), storage.RemoteOptions{MaxBatchBytes: 64 << 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := cas.Get(ctx, f.down, 0)
		done <- err
	}()
	awaitWhileRunning(t, second, done, "Get", "its second try")
	cancel()
	if err := awaitEnd(t, done, 10*time.Second, "Get", "its context ending"); status.Code(err) != codes.Canceled {
		t.Fatalf("Get after its context ended: %v, want CANCELED", err)
	}
}
