package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

// openBackend opens an s3 backend on a real SeaweedFS server, reading the
// secret from its file, and refuses bad ones with the key that is wrong.
func TestOpenS3Backend(t *testing.T) {
	srv := seaweedtest.Start(t)
	bucket := srv.CreateBucket(t, "cmd-test")
	dir := t.TempDir()
	secret := seaweedtest.SecretKeyFile(t, filepath.Join(dir, "secret"))
	ctx := context.Background()
	good := configs.S3Backend{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "p",
		AccessKeyID: seaweedtest.AccessKey, SecretAccessKeyFile: secret}
	o, err := openBackend(ctx, configs.Backend{S3: &good}, "backend", backendDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	data := []byte("through the backend tree")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := o.cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := o.ac.Put(ctx, "", d, &repb.ActionResult{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	if o.local != nil {
		t.Error("an S3 backend offered local files to link")
	}

	for name, tc := range map[string]struct {
		edit func(b *configs.S3Backend)
		want string
	}{
		"missing secret file": {func(b *configs.S3Backend) { b.SecretAccessKeyFile = filepath.Join(dir, "none") }, "backend.s3.secret_access_key_file"},
		"missing bucket":      {func(b *configs.S3Backend) { b.Bucket = "no-such-bucket" }, `backend.s3: rpc error: code = FailedPrecondition desc = s3: bucket "no-such-bucket" does not exist`},
		"bad prefix":          {func(b *configs.S3Backend) { b.Prefix = "/abs" }, "backend.s3: s3: prefix"},
		"small parts":         {func(b *configs.S3Backend) { b.PartSize = 1 << 20 }, "backend.s3: s3: part size"},
	} {
		b := good
		tc.edit(&b)
		_, err := openBackend(ctx, configs.Backend{S3: &b}, "backend", backendDeps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// TestS3BackendUnderPolicyIsPartitioned: under an auth policy an S3
// backend keeps each partition's blobs under a key prefix of its own, so a
// blob team-a stored is missing for team-b, as on a disk CAS; and it logs
// no warning of a shared CAS.
func TestS3BackendUnderPolicyIsPartitioned(t *testing.T) {
	policy := loadExamplePolicy(t)
	srv := seaweedtest.Start(t)
	bucket := srv.CreateBucket(t, "cmd-partitions")
	secret := seaweedtest.SecretKeyFile(t, filepath.Join(t.TempDir(), "secret"))
	var log testlog.Buffer
	o, err := openBackend(context.Background(), configs.Backend{S3: &configs.S3Backend{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "p",
		AccessKeyID: seaweedtest.AccessKey, SecretAccessKeyFile: secret}}, "backend", backendDeps{policy: policy, logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	d := putIsHiddenFromOtherTenant(t, o.cas, []byte("team-a's secret, in a bucket"))
	a := storage.WithInstance(context.Background(), "team-a")
	if missing, err := o.cas.FindMissing(a, []digest.Digest{d}); err != nil || len(missing) != 0 {
		t.Fatalf("team-a looking up its own blob: missing %v, %v", missing, err)
	}
	if strings.Contains(log.String(), "shared by every tenant") {
		t.Fatalf("a partitioned S3 backend was warned of as shared:\n%s", log.String())
	}
}
