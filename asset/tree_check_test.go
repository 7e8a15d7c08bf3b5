package asset_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestTreeChecksAreBoundedInBytes: every Fetch and Push of a directory
// record reads its whole tree to check it is present, holding a digest
// per file, so a tree whose directories total more than 64 MiB (five of
// 14 MiB here, each under the 16 MiB bound on one directory) is refused
// with RESOURCE_EXHAUSTED and not recorded.
func TestTreeChecksAreBoundedInBytes(t *testing.T) {
	h := start(t, nil)
	ctx := readsStatus(t)
	file := h.put(t, []byte("x"))
	long := strings.Repeat("n", 1000)
	root := &repb.Directory{}
	for i := range 5 {
		dir := &repb.Directory{}
		for j := range 14 << 10 {
			dir.Files = append(dir.Files, &repb.FileNode{Name: fmt.Sprintf("%s%d-%06d", long, i, j), Digest: file.Proto()})
		}
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprint("d", i), Digest: h.putProto(t, dir).Proto()})
	}
	rd := h.putProto(t, root)
	_, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:wide"}, RootDirectoryDigest: rd.Proto()})
	wantCode(t, err, codes.ResourceExhausted, "more than 67108864 bytes")
	resp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:wide"}})
	if err != nil || codes.Code(resp.Status.GetCode()) != codes.NotFound {
		t.Fatalf("fetch after the refused push: %v, %v; want a NOT_FOUND status", resp, err)
	}
}

// gatedStore holds every Get of a digest in gated until release is
// closed, and counts the Gets of each digest.
type gatedStore struct {
	storage.BlobStore
	mu      sync.Mutex
	gated   map[digest.Digest]bool
	gets    map[digest.Digest]int
	entered chan struct{}
	release chan struct{}
}

func (s *gatedStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.gets[d]++
	gated := s.gated[d]
	s.mu.Unlock()
	if gated {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.BlobStore.Get(ctx, d, offset)
}

// TestTreeChecksWaitForASlot: at most TreeChecks tree checks run at once
// (one here); another Fetch waits for one to end, reading nothing
// meanwhile (here until its deadline).
func TestTreeChecksWaitForASlot(t *testing.T) {
	var cas *gatedStore
	h := start(t, func(o *asset.Options) {
		cas = &gatedStore{BlobStore: o.CAS, gated: map[digest.Digest]bool{}, gets: map[digest.Digest]int{}, entered: make(chan struct{}), release: make(chan struct{})}
		o.CAS = cas
		o.TreeChecks = 1
	})
	ctx := readsStatus(t)
	push := func(uri, name string) digest.Digest {
		d := h.putProto(t, &repb.Directory{Files: []*repb.FileNode{{Name: name, Digest: h.put(t, []byte(name)).Proto()}}})
		if _, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{uri}, RootDirectoryDigest: d.Proto()}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Every record is pushed first: a push checks its tree in a slot too.
	const slots = 1
	held := make([]digest.Digest, slots)
	for i := range slots {
		held[i] = push(fmt.Sprint("urn:held", i), fmt.Sprint("held", i))
	}
	waiting := push("urn:waiting", "waiting")
	var wg sync.WaitGroup
	for i := range slots {
		uri := fmt.Sprint("urn:held", i)
		cas.mu.Lock()
		cas.gated[held[i]] = true
		cas.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{uri}}); err != nil || resp.Status.GetCode() != 0 {
				t.Errorf("fetch %s: %v, %v", uri, resp, err)
			}
		}()
		<-cas.entered
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	resp, err := h.fetch.FetchDirectory(short, &rapb.FetchDirectoryRequest{Uris: []string{"urn:waiting"}})
	if code := status.Code(err); code != codes.DeadlineExceeded && codes.Code(resp.GetStatus().GetCode()) != codes.DeadlineExceeded {
		t.Errorf("fetch while every slot is held: %v, %v; want DEADLINE_EXCEEDED", resp, err)
	}
	cas.mu.Lock()
	if n := cas.gets[waiting]; n != 1 { // the push's own check
		t.Errorf("the root of a fetch waiting for a slot was read %d times, want only the push's 1", n)
	}
	cas.mu.Unlock()
	close(cas.release)
	wg.Wait()
	if resp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:waiting"}}); err != nil || resp.Status.GetCode() != 0 {
		t.Fatalf("after the checks ended: %v, %v", resp, err)
	}
}

// TestTreeChecksAreShared: one client holds at most half the tree
// checks. Its many FetchDirectory calls of a tree whose check is stuck
// (a slow CAS here) held every check, and another client's fetch of a
// one-file directory waited behind all of them (a minute, with 200
// calls of a large tree).
func TestTreeChecksAreShared(t *testing.T) {
	var cas *gatedStore
	opts := asset.Options{Dir: t.TempDir()}
	cas = &gatedStore{BlobStore: storage.NewMemoryBlobStore(), gated: map[digest.Digest]bool{}, gets: map[digest.Digest]int{}, entered: make(chan struct{}, 8), release: make(chan struct{})}
	opts.CAS, opts.TreeChecks = cas, 2
	srv, err := asset.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := grpctest.Listen(t, srv.Register)
	greedy, other := grpctest.Dial(t, addr), grpctest.Dial(t, addr)
	ctx := readsStatus(t)
	push := rapb.NewPushClient(greedy)
	for _, name := range []string{"slow", "small"} {
		file := digest.FromBytes(repb.DigestFunction_SHA256, []byte(name))
		if err := cas.Put(ctx, file, strings.NewReader(name)); err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: name, Digest: file.Proto()}}})
		d := digest.FromBytes(repb.DigestFunction_SHA256, b)
		if err := cas.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if _, err := push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:" + name}, RootDirectoryDigest: d.Proto()}); err != nil {
			t.Fatal(err)
		}
		if name == "slow" {
			cas.mu.Lock()
			cas.gated[d] = true
			cas.mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(cas.release)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = rapb.NewFetchClient(greedy).FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:slow"}}) // ends once released
		}()
	}
	<-cas.entered // the greedy client's first check holds a slot
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := rapb.NewFetchClient(other).FetchDirectory(short, &rapb.FetchDirectoryRequest{Uris: []string{"urn:small"}})
	if err != nil || resp.Status.GetCode() != 0 {
		t.Fatalf("another client's fetch while one client's checks are stuck: %v, %v", resp, err)
	}
}
