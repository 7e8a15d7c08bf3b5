package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// maxActionResultBytes bounds an action cache entry read back: results are
// a few hundred bytes, and a bigger object is not one we wrote.
const maxActionResultBytes = 16<<20 + int64(storage.ActionResultEntryHeaderBytes)

// ActionCache is a storage.ActionCache in an S3 bucket: one small object
// per (instance name, action digest), holding the ActionResult as an
// entry of the disk action cache's format (its SHA-256 before it). An
// object replaced by a concurrent Put is seen whole, old or new (S3 PUTs
// are atomic). One that is not whole or no longer parses is removed and
// reported as NOT_FOUND, as the disk action cache does, so the action
// runs again and its new result replaces it: checked by parsing alone, a
// truncated entry was served as a success with exit code 0, and an empty
// one as a success with no outputs. An entry written before the header
// (an upgrade) is a miss too.
type ActionCache struct {
	c *Client
}

// NewActionCache returns the action cache kept by c.
func NewActionCache(c *Client) *ActionCache { return &ActionCache{c: c} }

// Get implements storage.ActionCache.
func (a *ActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	key := actionKey(a.c.prefix, instance, action)
	what := fmt.Sprintf("get action result %s in instance %q", action, instance)
	body, info, _, err := a.c.core.GetObject(ctx, a.c.bucket, key, minio.GetObjectOptions{})
	if isNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	if err != nil {
		return nil, statusError(what, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxActionResultBytes+1))
	if err != nil {
		return nil, statusError(what, err)
	}
	result := &repb.ActionResult{}
	if pb, whole := storage.DecodeActionResultEntry(data); !whole || int64(len(data)) > maxActionResultBytes || proto.Unmarshal(pb, result) != nil {
		if storage.OlderActionResultEntry(data) {
			a.c.log.Debug("s3: action result of an older format removed", "key", key)
		} else {
			a.c.log.Error("s3: unreadable action result removed", "key", key)
		}
		a.c.removeIfUnchanged(key, info.ETag)
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q (the stored one was unreadable)", action, instance)
	}
	return result, nil
}

// Put implements storage.ActionCache.
func (a *ActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	pb, err := proto.Marshal(result)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "action result for %s: %v", action, err)
	}
	data := storage.EncodeActionResultEntry(pb)
	_, err = a.c.core.PutObject(ctx, a.c.bucket, actionKey(a.c.prefix, instance, action), bytes.NewReader(data),
		int64(len(data)), "", "", minio.PutObjectOptions{ContentType: "application/x-protobuf"})
	return statusError(fmt.Sprintf("put action result %s in instance %q", action, instance), err)
}

var _ storage.ActionCache = (*ActionCache)(nil)
