package configs

import (
	"fmt"
	"strings"
)

// S3Backend keeps the CAS and action cache in an S3-compatible object
// store (Amazon S3, MinIO, Ceph RGW, SeaweedFS, GCS's S3 API). Blobs are
// objects keyed by digest function, hash and size under Prefix; see
// docs/storage.md.
type S3Backend struct {
	// Endpoint is the S3 API's host:port, without a scheme (TLS chooses
	// https), e.g. "s3.eu-west-1.amazonaws.com" or "minio-0:9000".
	Endpoint string `yaml:"endpoint"`
	// Bucket holds the objects. It must exist: the storage role checks it
	// at start.
	Bucket string `yaml:"bucket"`
	// Prefix goes in front of every key ("farm-a" makes farm-a/cas/...),
	// so several farms can share a bucket. Empty: keys start at the root.
	Prefix string `yaml:"prefix"`
	// Region of the bucket; empty means us-east-1.
	Region string `yaml:"region"`
	// AccessKeyID signs requests, with the secret key read from
	// SecretAccessKeyFile (secrets are never written in a config). Both
	// empty: credentials come from the environment (AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY) or the machine's IAM role.
	AccessKeyID string `yaml:"access_key_id"`
	// SecretAccessKeyFile is a file holding the secret access key (one
	// line; a trailing newline is ignored).
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	// TLS speaks HTTPS to the endpoint.
	TLS bool `yaml:"tls"`
	// MaxConcurrentRequests bounds the HEAD requests that FindMissingBlobs
	// has in flight at once, over all clients. 0 means 32.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// PartSize is the size of one part of a multipart upload (blobs over
	// 1 MiB stream up in parts), from 5MiB to 5GiB. 0 means 16MiB.
	PartSize ByteSize `yaml:"part_size"`
}

// Validate checks the fields that need no network; path names this
// backend in errors ("backend.s3"). The prefix and part size are checked
// where they are used, when the backend is opened.
func (s *S3Backend) Validate(path string) error {
	switch {
	case s.Endpoint == "":
		return fmt.Errorf("%s.endpoint: must be set", path)
	case strings.Contains(s.Endpoint, "://") || strings.Contains(s.Endpoint, "/"):
		return fmt.Errorf("%s.endpoint: give host:port only (tls chooses https), not %q", path, s.Endpoint)
	case s.Bucket == "":
		return fmt.Errorf("%s.bucket: must be set", path)
	case (s.AccessKeyID == "") != (s.SecretAccessKeyFile == ""):
		return fmt.Errorf("%s: access_key_id and secret_access_key_file must be set together", path)
	case s.MaxConcurrentRequests < 0:
		return fmt.Errorf("%s.max_concurrent_requests: must not be negative", path)
	}
	return nil
}
