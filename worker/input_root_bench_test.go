package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// BenchmarkInputRoot10000 materialises an input root of 10,000 small files
// (100 directories of 100) from a warm file cache, and in the same run
// copies the same tree with `cp -al` (hard links, what a shell user would
// do), reporting both per operation.
func BenchmarkInputRoot10000(b *testing.B) {
	dir := b.TempDir()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "cas")})
	if err != nil {
		b.Fatal(err)
	}
	put := func(data []byte) digest.Digest {
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if err := cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		return d
	}
	root := &repb.Directory{}
	for i := range 100 {
		sub := &repb.Directory{}
		for j := range 100 {
			d := put([]byte(fmt.Sprintf("file %d/%d\n", i, j)))
			sub.Files = append(sub.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d", j), Digest: d.Proto()})
		}
		sb, _ := proto.Marshal(sub)
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%03d", i), Digest: put(sb).Proto()})
	}
	rb, _ := proto.Marshal(root)
	rootDigest := put(rb)
	files, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas, Local: cas})
	if err != nil {
		b.Fatal(err)
	}
	builder := &inputRootBuilder{cas: cas, files: files, dirs: newDirectoryCache(defaultDirectoryCacheBytes), parallelism: 16, limits: InputLimits{}.withDefaults()}
	build := func(dst string) {
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if n, err := builder.build(context.Background(), repb.DigestFunction_SHA256, rootDigest, dst); err != nil || n != 10000 {
			b.Fatalf("build: %d files, %v", n, err)
		}
	}
	warm := filepath.Join(dir, "warm")
	build(warm) // warms the directory cache
	var ours, cp time.Duration
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(dir, fmt.Sprint("root", i))
		start := time.Now()
		build(dst)
		ours += time.Since(start)
		cpDst := filepath.Join(dir, fmt.Sprint("cp", i))
		start = time.Now()
		if out, err := exec.Command("cp", "-al", warm, cpDst).CombinedOutput(); err != nil {
			b.Fatalf("cp -al: %v %s", err, out)
		}
		cp += time.Since(start)
		b.StopTimer()
		os.RemoveAll(dst)
		os.RemoveAll(cpDst)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "paddock-ms/op")
	b.ReportMetric(float64(cp.Milliseconds())/float64(b.N), "cp-al-ms/op")
}
