package storage_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// emptyMessages is n empty entries of field, two bytes each on the wire.
func emptyMessages(field protowire.Number, n int) []byte {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(protowire.AppendTag(b, field, protowire.BytesType), 0)
	}
	return b
}

// A blob read from the CAS is decoded only if decoding it takes no more
// than a few times its size, as a request is: a 16 MiB Command of empty
// environment variables took 820 MB and six seconds of CPU to decode at
// each Execute naming it, and a Tree of 8 million empty children as much
// at each lookup of a result naming it. They are INVALID_ARGUMENT now,
// naming the blob, and cost about their size; an honest blob as large is
// read.
func TestBlobsTooCostlyToDecodeAreRefusedUnread(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(repb.DigestFunction_SHA256, b)
		if err := cas.Put(t.Context(), d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	bomb := put(emptyMessages(2, 8<<20))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := storage.GetProto(t.Context(), cas, bomb, &repb.Command{}, 64<<20)
	runtime.ReadMemStats(&after)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), bomb.String()) || !strings.Contains(err.Error(), "refused unread") {
		t.Fatalf("a Command of 8 million empty environment variables: %v, want INVALID_ARGUMENT naming the blob, refused unread", err)
	}
	// The blob's bytes, read whole, and little more.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
		t.Errorf("refusing the 16 MiB blob allocated %d MB", alloc>>20)
	}
	if err := storage.GetProto(t.Context(), cas, put(emptyMessages(2, 8<<20-1)), &repb.Tree{}, 64<<20); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a Tree of 8 million empty children: %v, want INVALID_ARGUMENT", err)
	}

	honest := &repb.Directory{}
	for i := range 100000 {
		honest.Files = append(honest.Files, &repb.FileNode{Name: strings.Repeat("f", 8) + string(rune('a'+i%26)) + strings.Repeat("x", i%7),
			Digest: &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: int64(i)}, IsExecutable: i%2 == 0})
	}
	d := putProto(t, cas, honest)
	got := &repb.Directory{}
	if err := storage.GetProto(t.Context(), cas, d, got, 64<<20); err != nil || len(got.Files) != len(honest.Files) {
		t.Fatalf("an honest Directory of %d bytes: %v, %d files", d.SizeBytes(), err, len(got.Files))
	}
	// Honest shapes of many small entries, refused at a factor of 5: a
	// directory of links to one tool as an input root, an action's output
	// of such links (its Tree), a Command of short variables.
	links := &repb.Directory{}
	for i := range 5000 {
		links.Symlinks = append(links.Symlinks, &repb.SymlinkNode{Name: fmt.Sprintf("%05d", i), Target: "x"})
	}
	env := &repb.Command{Arguments: []string{"true"}}
	for i := range 5000 {
		env.EnvironmentVariables = append(env.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: fmt.Sprintf("V%05d", i), Value: "1"})
	}
	for _, m := range []proto.Message{links, &repb.Tree{Root: links}, env} {
		d := putProto(t, cas, m)
		if err := storage.GetProto(t.Context(), cas, d, m.ProtoReflect().New().Interface(), 64<<20); err != nil {
			t.Errorf("an honest %s of %d bytes: %v", m.ProtoReflect().Descriptor().Name(), d.SizeBytes(), err)
		}
	}
}
