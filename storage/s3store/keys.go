package s3store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/paddock-build/paddock/digest"
)

// The object layout under a bucket's prefix:
//
//	PREFIX/cas/<function>/<hash>-<size>            a blob's bytes
//	PREFIX/ac/i<instance>/<function>/<hash>-<size> an ActionResult (protobuf)
//
// <function> is the digest function's lowercase name ("sha256"). The size
// is part of a blob's key, so a digest with the right hash and another
// size names another object. <instance> is the instance name in unpadded
// URL-safe base64 after an "i" (so the empty name is "i", never an empty
// path segment, and names with slashes stay one segment).

// blobKey is the object key of a blob.
func blobKey(prefix string, d digest.Digest) string {
	return prefix + "cas/" + functionName(d) + "/" + d.Hash() + "-" + strconv.FormatInt(d.SizeBytes(), 10)
}

// actionKey is the object key of an action cache entry.
func actionKey(prefix, instance string, action digest.Digest) string {
	return prefix + "ac/i" + base64.RawURLEncoding.EncodeToString([]byte(instance)) + "/" +
		functionName(action) + "/" + action.Hash() + "-" + strconv.FormatInt(action.SizeBytes(), 10)
}

func functionName(d digest.Digest) string { return strings.ToLower(d.Function().String()) }

// NormalizePrefix checks a configured key prefix and returns it ending in
// "/" (or empty). A prefix may not start with "/" nor hold empty segments:
// S3-compatible stores that map keys onto directories (SeaweedFS's filer,
// Ceph's) collapse them, so two prefixes would silently share objects.
func NormalizePrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if strings.HasPrefix(p, "/") || strings.Contains(p, "//") || p == "" {
		return "", fmt.Errorf("prefix %q: must not start with / nor hold empty segments", prefix)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("prefix %q: must not hold . or .. segments", prefix)
		}
	}
	return p + "/", nil
}
