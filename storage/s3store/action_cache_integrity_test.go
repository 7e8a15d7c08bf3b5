package s3store_test

import (
	"bytes"
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage/s3store"
)

// An action cache entry damaged in the bucket (cut short, emptied, a byte
// changed, or written before entries had a hash) is a miss, and is
// removed: checked by parsing alone, an entry cut by two bytes was served
// as a success with exit code 0, an empty one as a success with no
// outputs, and a mirrored pair copied the damage over its good side.
func TestDamagedActionResultIsAMiss(t *testing.T) {
	b := startBucket(t)
	ctx := context.Background()
	action := digest.FromBytes(repb.DigestFunction_SHA256, []byte("action"))
	result := &repb.ActionResult{ExitCode: 7, OutputFiles: []*repb.OutputFile{{Path: "out/f", Digest: action.Proto()}}}
	pb, err := proto.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"cut by two bytes":  func(e []byte) []byte { return e[:len(e)-2] },
		"empty":             func([]byte) []byte { return nil },
		"a byte changed":    func(e []byte) []byte { e[len(e)-1] ^= 1; return e },
		"before the header": func([]byte) []byte { return pb },
	} {
		t.Run(name, func(t *testing.T) {
			c, prefix := b.client(t)
			ac := s3store.NewActionCache(c)
			if err := ac.Put(ctx, "inst", action, result); err != nil {
				t.Fatal(err)
			}
			if got, err := ac.Get(ctx, "inst", action); err != nil || got.GetExitCode() != 7 {
				t.Fatalf("the stored result: %v, %v", got, err)
			}
			keys, _ := b.objects(t, prefix)
			if len(keys) != 1 {
				t.Fatalf("bucket holds %v, want one entry", keys)
			}
			mc := b.srv.Client()
			obj, err := mc.GetObject(ctx, b.name, keys[0], minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var entry bytes.Buffer
			if _, err := entry.ReadFrom(obj); err != nil {
				t.Fatal(err)
			}
			_ = obj.Close() // read whole already
			damaged := damage(entry.Bytes())
			if _, err := mc.PutObject(ctx, b.name, keys[0], bytes.NewReader(damaged), int64(len(damaged)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := ac.Get(ctx, "inst", action)
			if status.Code(err) != codes.NotFound {
				t.Fatalf("the damaged entry was served: %v, %v; want NOT_FOUND", got, err)
			}
			if keys, _ := b.objects(t, prefix); len(keys) != 0 {
				t.Fatalf("the damaged entry was left in the bucket: %v", keys)
			}
		})
	}
}
