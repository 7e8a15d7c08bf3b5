package compose_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// eventually polls f until it returns nil, as a client's retries would.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func blobData(i int) []byte {
	// Some large enough to go over ByteStream.
	if i%5 == 0 {
		return bytes.Repeat([]byte(fmt.Sprintf("large-%d;", i)), 300000)
	}
	return []byte(fmt.Sprintf("blob %d", i))
}

// A stopped shard makes its blobs UNAVAILABLE, naming the shard by its
// configured name and nothing of its address; the other shards keep
// working; once it is back, calls succeed again.
func TestShardedStoppedShard(t *testing.T) {
	ctx := context.Background()
	nodes := []*node{startNode(t), startNode(t), startNode(t)}
	names := []string{"alpha", "beta", "gamma"}
	var shards []compose.BlobShard
	var acShards []compose.ACShard
	var ws []compose.ShardWeight
	for i, n := range nodes {
		shards = append(shards, compose.BlobShard{Name: names[i], Weight: 1, Store: n.cas()})
		acShards = append(acShards, compose.ACShard{Name: names[i], Weight: 1, Cache: n.ac()})
		ws = append(ws, compose.ShardWeight{Name: names[i], Weight: 1})
	}
	cas, err := compose.NewShardedBlobStore(shards)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := compose.NewShardedActionCache(acShards)
	if err != nil {
		t.Fatal(err)
	}
	place, _ := compose.NewPlacement(ws)
	var ds []digest.Digest
	for i := range 30 {
		ds = append(ds, putBytes(t, cas, blobData(i)))
		if err := ac.Put(ctx, "", ds[i], &repb.ActionResult{ExitCode: int32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	shardOf := func(d digest.Digest) string { return names[place.Pick(d.Function().String()+"/"+d.Hash())] }

	nodes[1].stop()
	var down, up int
	for i, d := range ds {
		_, err := storagetest.ReadAll(t, cas, d, 0)
		_, acErr := ac.Get(ctx, "", d)
		if shardOf(d) != "beta" {
			up++
			if err != nil || acErr != nil {
				t.Fatalf("blob %d on live shard %s: read %v, action cache %v", i, shardOf(d), err, acErr)
			}
			continue
		}
		down++
		for what, err := range map[string]error{"read": err, "action cache": acErr} {
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"beta"`) || strings.Contains(err.Error(), "127.0.0.1") {
				t.Fatalf("%s of blob %d on the stopped shard: got %v, want UNAVAILABLE naming \"beta\" and no address", what, i, err)
			}
		}
	}
	if down == 0 || up == 0 {
		t.Fatalf("%d blobs on the stopped shard, %d on others: the test needs both", down, up)
	}
	_, err = cas.FindMissing(ctx, ds)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"beta"`) {
		t.Fatalf("FindMissing over all shards: %v, want UNAVAILABLE naming beta", err)
	}

	nodes[1].start()
	eventually(t, "FindMissing after the shard is back", func() error {
		missing, err := cas.FindMissing(ctx, ds)
		if err == nil && len(missing) > 0 {
			t.Fatalf("missing after restart: %v", missing)
		}
		return err
	})
	for _, d := range ds {
		if _, err := storagetest.ReadAll(t, cas, d, 0); err != nil {
			t.Fatalf("read %s after the shard is back: %v", d, err)
		}
	}
}

// REv2: servers MUST behave as though empty blobs are always available,
// so FindMissing reports them present even when every shard is down.
func TestShardedEmptyBlobIsAlwaysAvailable(t *testing.T) {
	nodes := []*node{startNode(t), startNode(t)}
	var shards []compose.BlobShard
	for i, n := range nodes {
		shards = append(shards, compose.BlobShard{Name: fmt.Sprint("s", i), Weight: 1, Store: n.cas()})
	}
	cas, err := compose.NewShardedBlobStore(shards)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.stop()
	}
	empty := []digest.Digest{digest.Empty(repb.DigestFunction_SHA256), digest.Empty(repb.DigestFunction_SHA512)}
	if missing, err := cas.FindMissing(context.Background(), empty); err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing of the empty blobs with every shard down: %v, %v; want none missing", missing, err)
	}
}

func mirroredPair(t *testing.T) (*compose.MirroredBlobStore, *compose.MirroredActionCache, [2]*node) {
	nodes := [2]*node{startNode(t), startNode(t)}
	rep := newRepairer(t)
	cas := compose.NewMirroredBlobStore(compose.Mirror{Name: "left", Store: nodes[0].cas()}, compose.Mirror{Name: "right", Store: nodes[1].cas()}, rep, nil)
	ac := compose.NewMirroredActionCache(compose.ACMirror{Name: "left", Cache: nodes[0].ac()}, compose.ACMirror{Name: "right", Cache: nodes[1].ac()}, rep, nil)
	return cas, ac, nodes
}

// Either side of a mirror may stop: reads and writes go on with no error,
// and what was written meanwhile reaches the stopped side once it is back
// and the blob is looked up or read.
func TestMirroredStoppedSide(t *testing.T) {
	ctx := context.Background()
	for _, stopped := range []int{0, 1} {
		t.Run(fmt.Sprintf("side%d", stopped), func(t *testing.T) {
			cas, ac, nodes := mirroredPair(t)
			before := []digest.Digest{putBytes(t, cas, blobData(0)), putBytes(t, cas, blobData(1))}
			nodes[stopped].stop()
			during := []digest.Digest{putBytes(t, cas, blobData(2)), putBytes(t, cas, blobData(5))}
			all := append(append([]digest.Digest{}, before...), during...)
			if missing, err := cas.FindMissing(ctx, all); err != nil || len(missing) != 0 {
				t.Fatalf("FindMissing with one side down: %v, %v", missing, err)
			}
			for _, d := range all {
				if _, err := storagetest.ReadAll(t, cas, d, 0); err != nil {
					t.Fatalf("read %s with one side down: %v", d, err)
				}
				if err := ac.Put(ctx, "", d, &repb.ActionResult{ExitCode: 7}); err != nil {
					t.Fatalf("action cache write with one side down: %v", err)
				}
				if r, err := ac.Get(ctx, "", d); err != nil || r.ExitCode != 7 {
					t.Fatalf("action cache read with one side down: %v, %v", r, err)
				}
			}
			nodes[stopped].start()
			// Looking the blobs up repairs the side that was down.
			side := storage.NewRemoteBlobStore(nodes[stopped].conn, storage.RemoteOptions{})
			eventually(t, "repair of the side that was down", func() error {
				if _, err := cas.FindMissing(ctx, all); err != nil {
					return err
				}
				missing, err := side.FindMissing(ctx, all)
				if err == nil && len(missing) > 0 {
					return fmt.Errorf("still missing on the repaired side: %v", missing)
				}
				return err
			})
		})
	}
}

// A blob found on the second side only is served from it and copied to
// the first, streamed.
func TestMirroredRepairOnRead(t *testing.T) {
	cas, _, nodes := mirroredPair(t)
	right := nodes[1].cas()
	data := blobData(10) // large: ByteStream both ways
	d := putBytes(t, right, data)
	got, err := storagetest.ReadAll(t, cas, d, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of a blob on the second side only: %d bytes, %v", len(got), err)
	}
	left := nodes[0].cas()
	eventually(t, "copy to the first side", func() error {
		r, err := left.Get(context.Background(), d, 0)
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err == nil && !bytes.Equal(b, data) {
			t.Fatal("repaired copy differs")
		}
		return err
	})
}

// A side that stops in the middle of a read: the read goes on from the
// other side at the same offset.
func TestMirroredFailoverMidStream(t *testing.T) {
	cas, _, nodes := mirroredPair(t)
	data := blobData(20)
	d := putBytes(t, cas, data)
	r, err := cas.Get(context.Background(), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	nodes[0].stop()
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(append(head, rest...), data) {
		t.Fatalf("read across the stop: %d bytes, %v", len(head)+len(rest), err)
	}
}

// Both sides down is UNAVAILABLE naming both.
func TestMirroredBothDown(t *testing.T) {
	cas, _, nodes := mirroredPair(t)
	nodes[0].stop()
	nodes[1].stop()
	_, err := cas.FindMissing(context.Background(), []digest.Digest{digest.FromBytes(repb.DigestFunction_SHA256, []byte("x"))})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"left"`) || !strings.Contains(err.Error(), `"right"`) {
		t.Fatalf("got %v, want UNAVAILABLE naming both", err)
	}
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("x"))
	if err := cas.Put(context.Background(), d, bytes.NewReader([]byte("x"))); status.Code(err) != codes.Unavailable {
		t.Fatalf("Put with both down: %v", err)
	}
}

// A copy found corrupt on the first side (and removed by its disk) is
// served from the second and written back to the first.
func TestMirroredCorruptCopyIsServedFromTheOtherAndRepaired(t *testing.T) {
	cas, _, nodes := mirroredPair(t)
	data := []byte("a blob whose first copy rots")
	d := putBytes(t, cas, data)
	path := filepath.Join(nodes[0].dir, "cas", "sha256", d.Hash()[:2], d.Hash())
	if err := os.WriteFile(path, []byte("a blob whose first copy ROTS"), 0o444); err != nil {
		t.Fatal(err)
	}
	got, err := storagetest.ReadAll(t, cas, d, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of a blob corrupt on the first side: %q, %v", got, err)
	}
	left := nodes[0].cas()
	eventually(t, "the first side's copy rewritten", func() error {
		b, err := storagetest.ReadAll(t, left, d, 0)
		if err == nil && !bytes.Equal(b, data) {
			return fmt.Errorf("first side still serves %q", b)
		}
		return err
	})
}

// A side that answers with an error of its own (not UNAVAILABLE) fails
// the write: the blob would be on one side only while both are up.
func TestMirroredWriteFailsIfASideRefuses(t *testing.T) {
	// tiny holds a few small blobs (each counted as the disk blocks its
	// file takes, 4 KiB at least), not the large one.
	roomy, tiny := newDisk(t, 0), newDisk(t, 64<<10)
	cas := compose.NewMirroredBlobStore(compose.Mirror{Name: "roomy", Store: roomy}, compose.Mirror{Name: "tiny", Store: tiny}, newRepairer(t), nil)
	data := bytes.Repeat([]byte("x"), 128<<10)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	err := cas.Put(context.Background(), d, bytes.NewReader(data))
	// Larger than all tiny holds: INVALID_ARGUMENT, as that will not change.
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"tiny"`) {
		t.Fatalf("Put refused by one side: %v, want INVALID_ARGUMENT naming \"tiny\"", err)
	}
	small := putBytes(t, cas, []byte("fits on both"))
	if !roomy.Has(small) || !tiny.Has(small) {
		t.Fatal("a blob written while both sides are up is not on both")
	}
}
