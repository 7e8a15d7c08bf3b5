package asset_test

import (
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

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
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

// TestTreeChecksWaitForASlot: at most half the cores' worth of tree
// checks run at once; another Fetch waits for one to end, reading nothing
// meanwhile (here until its deadline).
func TestTreeChecksWaitForASlot(t *testing.T) {
	var cas *gatedStore
	h := start(t, func(o *asset.Options) {
		cas = &gatedStore{BlobStore: o.CAS, gated: map[digest.Digest]bool{}, gets: map[digest.Digest]int{}, entered: make(chan struct{}), release: make(chan struct{})}
		o.CAS = cas
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
	slots := storage.TreeWalkSlots()
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
