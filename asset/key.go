package asset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kind separates blob records from directory records: the same URI may
// name both.
type kind string

const (
	kindBlob      kind = "blob"
	kindDirectory kind = "directory"
)

// recordKey is the name of the record of (instance, kind, uri,
// qualifiers): a hash, so that it is a safe file name whatever the URI,
// and independent of the order qualifiers come in (REv2: "qualifiers may
// be supplied in any order").
func recordKey(instance string, k kind, uri string, qs []*rapb.Qualifier) string {
	sorted := make([]string, len(qs))
	for i, q := range qs {
		sorted[i] = q.Name + "=" + q.Value
	}
	sort.Strings(sorted)
	h := sha256.New()
	for _, part := range append([]string{instance, string(k), uri}, sorted...) {
		fmt.Fprintf(h, "%d:%s\x00", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkRequest validates what every Fetch and Push request carries: at
// least one URI, none empty, and qualifier names that are unique and not
// empty. An empty request is INVALID_ARGUMENT, which is also how clients
// such as BuildStream probe for the service.
func checkRequest(uris []string, qs []*rapb.Qualifier) error {
	if len(uris) == 0 {
		return status.Error(codes.InvalidArgument, "uris: at least one URI is required")
	}
	for i, u := range uris {
		if strings.TrimSpace(u) == "" {
			return status.Errorf(codes.InvalidArgument, "uris[%d]: empty", i)
		}
	}
	seen := map[string]bool{}
	for i, q := range qs {
		if q.Name == "" {
			return status.Errorf(codes.InvalidArgument, "qualifiers[%d].name: empty", i)
		}
		if seen[q.Name] {
			return status.Errorf(codes.InvalidArgument, "qualifiers[%d].name: %q appears twice; names must be unique", i, q.Name)
		}
		seen[q.Name] = true
	}
	return nil
}

// qualifier returns the value of the qualifier named name, if present.
func qualifier(qs []*rapb.Qualifier, name string) (string, bool) {
	for _, q := range qs {
		if q.Name == name {
			return q.Value, true
		}
	}
	return "", false
}
