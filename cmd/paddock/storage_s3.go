package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/s3store"
)

// openS3Backend opens an S3 backend: it reads the secret key from its
// file and checks at start that the bucket is there and readable, so a
// wrong config stops the role with a message naming the key instead of
// failing the first build. path names the backend in errors.
func openS3Backend(ctx context.Context, b *configs.S3Backend, path string, deps backendDeps) (openedBackend, error) {
	opts := s3store.Options{
		Endpoint: b.Endpoint, TLS: b.TLS, Region: b.Region, Bucket: b.Bucket, Prefix: b.Prefix,
		AccessKeyID: b.AccessKeyID, MaxConcurrentRequests: b.MaxConcurrentRequests,
		PartSize: int64(b.PartSize), Logger: deps.logger,
	}
	if b.SecretAccessKeyFile != "" {
		auth.WarnIfReadableByAll(deps.logger, path+".secret_access_key_file", b.SecretAccessKeyFile)
		secret, err := os.ReadFile(b.SecretAccessKeyFile)
		if err != nil {
			return openedBackend{}, fmt.Errorf("%s.secret_access_key_file: %w", path, err)
		}
		opts.SecretAccessKey = strings.TrimRight(string(secret), "\r\n")
		if opts.SecretAccessKey == "" {
			return openedBackend{}, fmt.Errorf("%s.secret_access_key_file: %s is empty", path, b.SecretAccessKeyFile)
		}
	}
	c, err := s3store.New(opts)
	if err != nil {
		return openedBackend{}, fmt.Errorf("%s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.CheckBucket(ctx); err != nil {
		return openedBackend{}, fmt.Errorf("%s: %w", path, err)
	}
	o := openedBackend{cas: s3store.NewBlobStore(c), ac: s3store.NewActionCache(c), close: func() {}}
	if deps.policy != nil {
		o.cas = partitionedS3(opts, deps.policy)
	}
	return o, nil
}

// partitionedS3 is the CAS of an S3 backend under an auth policy: each
// partition's blobs under a key prefix of its own (PREFIX/partitions/NAME/),
// as a disk CAS keeps each under a directory of its own, so that a blob
// another tenant stored is missing for FindMissingBlobs and reads alike.
// The action cache stays keyed by instance name, under PREFIX.
func partitionedS3(opts s3store.Options, policy *auth.Policy) storage.BlobStore {
	return storage.NewPartitionedBlobStore(policy.PartitionOf, func(partition string) (storage.BlobStore, error) {
		po := opts
		po.Prefix = strings.TrimSuffix(opts.Prefix, "/") + "/partitions/" + partition
		if opts.Prefix == "" {
			po.Prefix = "partitions/" + partition
		}
		c, err := s3store.New(po)
		if err != nil {
			return nil, err
		}
		return s3store.NewBlobStore(c), nil
	})
}
