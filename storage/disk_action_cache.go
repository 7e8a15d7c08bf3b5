package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// maxActionResultBytes bounds an action cache entry read from disk.
const maxActionResultBytes = 16 << 20

// DiskActionCache stores one file per (instance name, action digest) under
// Dir/ac/<2 hex>/<key>, where key hashes both, so instance names (which may
// hold slashes) never become paths and instances never share entries.
// Entries are written to Dir/tmp and renamed into place, so readers see the
// old or the new result, never a mix. Entries are small and not evicted;
// one that no longer parses is removed and reported as NOT_FOUND.
type DiskActionCache struct {
	acDir, tmpDir string
	log           *slog.Logger
}

// NewDiskActionCache opens (or creates) the action cache under dir. It may
// share dir with a DiskBlobStore (whose start-up clears Dir/tmp: open the
// blob store first).
func NewDiskActionCache(dir string, logger *slog.Logger) (*DiskActionCache, error) {
	c := &DiskActionCache{acDir: filepath.Join(dir, "ac"), tmpDir: filepath.Join(dir, "tmp"), log: logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{c.acDir, c.tmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create action cache directory: %w", err)
		}
	}
	return c, nil
}

func (c *DiskActionCache) path(instance string, action digest.Digest) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%s/%s", len(instance), instance, action.Function(), action)
	key := hex.EncodeToString(h.Sum(nil))
	return filepath.Join(c.acDir, key[:2], key)
}

// Get implements ActionCache.
func (c *DiskActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	p := c.path(instance, action)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	if err != nil {
		return nil, fmt.Errorf("read action result %s: %w", action, err)
	}
	r := &repb.ActionResult{}
	if len(b) > maxActionResultBytes || proto.Unmarshal(b, r) != nil {
		c.log.Error("action cache entry corrupt; removed", "instance", instance, "action", action.String())
		_ = os.Remove(p)
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	return r, nil
}

// Put implements ActionCache.
func (c *DiskActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	b, err := proto.Marshal(result)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "action result: %v", err)
	}
	if len(b) > maxActionResultBytes {
		return status.Errorf(codes.InvalidArgument, "action result is %d bytes, more than the %d allowed", len(b), maxActionResultBytes)
	}
	p := c.path(instance, action)
	tmp, err := os.CreateTemp(c.tmpDir, "ac-*")
	if err != nil {
		return fmt.Errorf("write action result %s: %w", action, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write action result %s: %w", action, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write action result %s: %w", action, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write action result %s: %w", action, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write action result %s: %w", action, err)
	}
	return nil
}

var _ ActionCache = (*DiskActionCache)(nil)
