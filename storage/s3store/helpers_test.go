package s3store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

// bucket is a real SeaweedFS server with one bucket; each store made on
// it gets a key prefix of its own, so it starts empty without the cost of
// a server per subtest.
type bucket struct {
	srv    *seaweedtest.Server
	name   string
	nextID atomic.Int64
}

func startBucket(t *testing.T) *bucket {
	t.Helper()
	srv := seaweedtest.Start(t)
	return &bucket{srv: srv, name: srv.CreateBucket(t, "paddock-cas")}
}

// client returns a Client on a fresh prefix, with 5 MiB parts so that
// multi-part uploads are met by blobs of a few MiB.
func (b *bucket) client(t *testing.T) (*s3store.Client, string) {
	t.Helper()
	prefix := fmt.Sprintf("t%d/", b.nextID.Add(1))
	c, err := s3store.New(s3store.Options{
		Endpoint: b.srv.Endpoint, Bucket: b.name, Prefix: prefix,
		AccessKeyID: seaweedtest.AccessKey, SecretAccessKey: seaweedtest.SecretKey,
		PartSize: s3store.MinPartSize, MaxConcurrentRequests: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, prefix
}

// objects lists the keys under prefix, and the multipart uploads still
// open there: what a reader of the bucket could see or a lifecycle rule
// would have to clean.
func (b *bucket) objects(t *testing.T, prefix string) (keys, uploads []string) {
	t.Helper()
	ctx := context.Background()
	mc := b.srv.Client()
	for o := range mc.ListObjects(ctx, b.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list objects: %v", o.Err)
		}
		keys = append(keys, o.Key)
	}
	for u := range mc.ListIncompleteUploads(ctx, b.name, prefix, true) {
		if u.Err != nil {
			t.Fatalf("list uploads: %v", u.Err)
		}
		uploads = append(uploads, u.Key)
	}
	return keys, uploads
}
