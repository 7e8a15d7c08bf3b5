package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/worker"
)

// shardedFront is a storage front over two shards, s0 and s1, each a
// storage server on loopback, as docs/storage.md composes them; the test
// stops s1 when the first call of method reaches the front, before the
// front serves it.
type shardedFront struct {
	shards    [2]*restartableStorage
	placement *compose.Placement
	addr      string
	stopped   sync.Once
}

func newShardedFront(t *testing.T, method string) *shardedFront {
	t.Helper()
	f := &shardedFront{}
	var shards []compose.BlobShard
	var weights []compose.ShardWeight
	for i := range f.shards {
		f.shards[i] = newRestartableStorage(t)
		// The front's own connection: no storage wait, and a reconnect
		// backoff short enough for tests.
		conn := grpctest.Dial(t, f.shards[i].addr, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}, MinConnectTimeout: time.Second,
		}))
		name := fmt.Sprintf("s%d", i)
		shards = append(shards, compose.BlobShard{Name: name, Weight: 1, Store: storage.NewRemoteBlobStore(conn, storage.RemoteOptions{})})
		weights = append(weights, compose.ShardWeight{Name: name, Weight: 1})
	}
	cas, err := compose.NewShardedBlobStore(shards)
	if err != nil {
		t.Fatal(err)
	}
	if f.placement, err = compose.NewPlacement(weights); err != nil {
		t.Fatal(err)
	}
	stop := func(m string) {
		if m == method {
			f.stopped.Do(f.shards[1].stop)
		}
	}
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()})
	f.addr = grpctest.Listen(t, srv.Register,
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			stop(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			stop(info.FullMethod)
			return h(srv, ss)
		}))
	return f
}

// blobOn returns a blob of about size bytes that the front keeps on
// shard i, by the placement of compose.ShardedBlobStore (its key: the
// digest function and the hash).
func (f *shardedFront) blobOn(i int, size int, label string) []byte {
	for n := 0; ; n++ {
		data := bytes.Repeat([]byte(fmt.Sprintf("%s %d ", label, n)), max(1, size/(len(label)+8)))
		d := digest.FromBytes(sha256, data)
		if f.placement.Pick(d.Function().String()+"/"+d.Hash()) == i {
			return data
		}
	}
}

// A shard of a storage front that goes down as a worker's call reaches
// the front, and is back some time later, delays the call and does not
// fail it: the front answers OK with an UNAVAILABLE entry for the blob
// on that shard (BatchReadBlobs, BatchUpdateBlobs), or fails a Write it
// has opened, and the worker waits for the shard as for a storage
// restart. Before, each of these failed the action within milliseconds.
func TestStorageWaitRidesOutAShardDownBehindAFront(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		// call runs the worker's storage call against f, and returns a
		// check of its outcome once it has ended.
		call func(t *testing.T, f *shardedFront, cas *storage.RemoteBlobStore) (func(error), func() error)
	}{
		{"BatchReadBlobs", repb.ContentAddressableStorage_BatchReadBlobs_FullMethodName, readFromBothShards},
		{"BatchUpdateBlobs", repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName, writeToBothShards},
		{"Write", "/google.bytestream.ByteStream/Write", writeLargeToTheDownShard},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newShardedFront(t, tc.method)
			log := newOutageLog()
			conn := grpctest.Dial(t, f.addr, worker.StorageDialOptions(worker.StorageWaitOptions{Logger: slog.New(log)})...)
			cas := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{ForwardInstance: true, MaxBatchBytes: 64 << 10})
			check, call := tc.call(t, f, cas)
			done := make(chan error, 1)
			go func() { done <- call() }()
			awaitWhileRunning(t, log.warned, done, "the call", "the shard's outage to be logged")
			f.shards[1].start()
			check(awaitEnd(t, done, 20*time.Second, "the call", "the shard's restart"))
			if w, i := log.warns.Load(), log.infos.Load(); w != 1 || i != 1 {
				t.Errorf("logged %d outages and %d recoveries, want 1 and 1", w, i)
			}
		})
	}
}

// readFromBothShards reads, in one batch, a blob of each shard.
func readFromBothShards(t *testing.T, f *shardedFront, cas *storage.RemoteBlobStore) (func(error), func() error) {
	var ds []digest.Digest
	var datas [][]byte
	for i := range f.shards {
		data := f.blobOn(i, 100, "input")
		ds = append(ds, digest.FromBytes(sha256, data))
		datas = append(datas, data)
		if err := f.shards[i].cas.Put(context.Background(), ds[i], bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	var got map[digest.Digest][]byte
	return func(err error) {
			if err != nil || len(got) != 2 || !bytes.Equal(got[ds[0]], datas[0]) || !bytes.Equal(got[ds[1]], datas[1]) {
				t.Fatalf("GetMany after the shard's restart: %d blobs, %v; want both", len(got), err)
			}
		}, func() error {
			var err error
			got, err = cas.GetMany(context.Background(), ds)
			return err
		}
}

// writeToBothShards writes, in one batch, a blob to each shard.
func writeToBothShards(t *testing.T, f *shardedFront, cas *storage.RemoteBlobStore) (func(error), func() error) {
	blobs := map[digest.Digest][]byte{}
	var ds []digest.Digest
	for i := range f.shards {
		data := f.blobOn(i, 100, "output")
		ds = append(ds, digest.FromBytes(sha256, data))
		blobs[ds[i]] = data
	}
	return func(err error) {
			if err != nil {
				t.Fatalf("PutMany after the shard's restart: %v", err)
			}
			for i, d := range ds {
				if got, err := storagetest.ReadAll(t, f.shards[i].cas, d, 0); err != nil || !bytes.Equal(got, blobs[d]) {
					t.Errorf("shard s%d stored %d bytes of %d: %v", i, len(got), len(blobs[d]), err)
				}
			}
		}, func() error {
			return cas.PutMany(context.Background(), blobs)
		}
}

// writeLargeToTheDownShard writes with ByteStream a blob of the shard
// that goes down.
func writeLargeToTheDownShard(t *testing.T, f *shardedFront, cas *storage.RemoteBlobStore) (func(error), func() error) {
	data := f.blobOn(1, 2<<20, "large output")
	d := digest.FromBytes(sha256, data)
	return func(err error) {
			if err != nil {
				t.Fatalf("Put after the shard's restart: %v", err)
			}
			if got, err := storagetest.ReadAll(t, f.shards[1].cas, d, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("shard s1 stored %d bytes of %d: %v", len(got), len(data), err)
			}
		}, func() error {
			return cas.Put(context.Background(), d, bytes.NewReader(data))
		}
}
