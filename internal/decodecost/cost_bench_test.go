package decodecost

import (
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCheck: the walk before decoding, beside the decoding itself,
// for a Directory of 100 source files (what the worker and GetTree read
// most).
func BenchmarkCheck(b *testing.B) {
	d := &repb.Directory{}
	for i := range 100 {
		d.Files = append(d.Files, &repb.FileNode{Name: fmt.Sprintf("file%03d.cc", i), Digest: &repb.Digest{Hash: fmt.Sprintf("%064x", i), SizeBytes: int64(i)}})
	}
	wire, _ := proto.Marshal(d)
	b.Run("check", func(b *testing.B) {
		for range b.N {
			if err := Check(wire, d, 5); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		for range b.N {
			if err := proto.Unmarshal(wire, &repb.Directory{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
