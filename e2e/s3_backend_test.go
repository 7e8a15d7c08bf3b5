package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/paddock-build/paddock/internal/bazeltest"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

// TestBazelS3Backend runs Bazel 4.2.3 against `paddock up --storage-config`
// whose backend is a bucket on a real SeaweedFS server: the build of
// //:report (a genrule chain, a remote compile and link, and a genrule
// that runs the linked binary) executes remotely with every blob and
// result kept in S3; after `bazel clean` it is all remote cache hits with
// the same bytes. Kept to one target so that it stays short.
func TestBazelS3Backend(t *testing.T) {
	needPaddock(t)
	srv := seaweedtest.Start(t)
	bucket := srv.CreateBucket(t, "paddock-e2e")
	dir := t.TempDir()
	secret := seaweedtest.SecretKeyFile(t, filepath.Join(dir, "s3-secret"))
	config := filepath.Join(dir, "storage.yaml")
	if err := os.WriteFile(config, []byte(`version: 1
backend:
  s3:
    endpoint: "`+srv.Endpoint+`"
    bucket: `+bucket+`
    prefix: farm
    access_key_id: `+seaweedtest.AccessKey+`
    secret_access_key_file: `+secret+`
`), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startUp(t, "", "--storage-config", config)
	b := newBazel(t)
	flags := append(b.remoteFlags(f.addr), "//:report")
	want := map[string]string{"bazel-bin/report.txt": "HELLO FROM PADDOCK\nhello, paddock\n"}

	out := b.Run(0, "build", flags...)
	summary := bazeltest.ProcessSummary(t, out)
	remote := summary["remote"]
	t.Logf("first build: %v", summary)
	if remote < 5 || !onlyKinds(summary, "remote", "internal") {
		t.Fatalf("first build: process summary %v, want at least 5 remote actions and nothing else\n%s", summary, out)
	}
	first := b.checkOutputs(want)

	// Blobs and results are in the bucket, under the prefix; none on disk.
	cas, ac := countObjects(t, srv.Client(), bucket, "farm/cas/"), countObjects(t, srv.Client(), bucket, "farm/ac/")
	t.Logf("bucket: %d blobs, %d action results", cas, ac)
	if cas == 0 || ac < remote {
		t.Errorf("bucket holds %d blobs and %d action results, want some blobs and at least %d results", cas, ac, remote)
	}
	if _, err := os.Stat(filepath.Join(f.data, "storage")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the farm kept a disk CAS next to S3 (stat: %v)", err)
	}

	b.Run(0, "clean")
	out = b.Run(0, "build", flags...)
	summary = bazeltest.ProcessSummary(t, out)
	t.Logf("rebuild after clean: %v", summary)
	if summary["remote cache hit"] != remote || !onlyKinds(summary, "remote cache hit", "internal") {
		t.Errorf("rebuild after clean: process summary %v, want %d remote cache hits\n%s", summary, remote, out)
	}
	if again := b.checkOutputs(want); again["bazel-bin/report.txt"] != first["bazel-bin/report.txt"] {
		t.Errorf("report.txt changed after the cache round trip: %q, then %q", first, again)
	}
}

// countObjects counts the objects under prefix.
func countObjects(t *testing.T, c *minio.Client, bucket, prefix string) int {
	t.Helper()
	n := 0
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		if !strings.HasSuffix(o.Key, "/") {
			n++
		}
	}
	return n
}
