package asset

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// kind separates blob records from directory records: the same URI may
// name both.
type kind string

const (
	kindBlob      kind = "blob"
	kindDirectory kind = "directory"
)

// recordKeyVersion is hashed into every key first. Keys of version 1
// joined each qualifier as name+"="+value, so a qualifier named
// "checksum.sri=sha256-…" (an SRI without its trailing "=") with an empty
// value had the key of checksum.sri=sha256-…=, and a pusher could answer
// other clients' checksummed fetches with content of its choice. Those
// records are never found again (nothing tells their qualifiers apart);
// the record bound (recordStore) removes them in time.
const recordKeyVersion = "2"

// recordKey is the name of the record of (instance, kind, digest
// function, uri, qualifiers): a hash, so that it is a safe file name
// whatever the URI, and independent of the order qualifiers come in
// (REv2: "qualifiers may be supplied in any order"). Every part, each
// qualifier's name and value too, is length-prefixed, so that no two
// different requests share a key. The digest function is part of it
// because a Fetch names the function the server must answer with: a
// SHA-512 record does not answer a SHA-256 fetch. Header qualifiers
// (credentials) count as keyQualifiers says.
func recordKey(instance string, k kind, fn digest.Function, uri string, qs []*rapb.Qualifier) string {
	qs = keyQualifiers(k, qs)
	quals := make([]string, len(qs))
	for i, q := range qs {
		quals[i] = lengthPrefixed(q.Name) + lengthPrefixed(q.Value)
	}
	sort.Strings(quals)
	h := sha256.New()
	for _, part := range append([]string{recordKeyVersion, instance, string(k), fn.String(), uri}, quals...) {
		h.Write([]byte(lengthPrefixed(part))) // a hash's Write never fails
	}
	return hex.EncodeToString(h.Sum(nil))
}

// lengthPrefixed is s as "LEN:s": a sequence of them reads back one way
// only, whatever bytes s holds.
func lengthPrefixed(s string) string {
	return strconv.Itoa(len(s)) + ":" + s
}

// maxURIs and maxURIBytes bound a request's URIs: clients name an
// artifact's mirrors, a handful. A Push stores a record per URI, so one
// PushBlob naming 50,000 wrote 50,000 records (200 MB on disk, counted at
// 4 KiB each against the records' bound), and three such requests evicted
// every tenant's records; a 3 MB URI was taken as a key.
//
// maxQualifiers and maxQualifierBytes bound a request's qualifiers. Every
// record a request makes holds them in full and every key hashes them
// again, once per URI, so one PushBlob of 100 URIs and a 1 MiB qualifier
// wrote 101 MB of records (and a Fetch like it hashed 100 MiB to look
// itself up). What clients send is small: Bazel's downloader sends
// checksum.sri (under 100 bytes), bazel.canonical_id (http_archive's
// default is its URLs joined), an http_header:NAME per header and, when
// it propagates credentials, an http_header_url:I:NAME per URL and header
// (older Bazels sent headers as one bazel.auth_headers JSON value); a
// few mirrors and tokens of a few KiB each come to tens of KiB at most.
// BuildStream sends none. The count leaves room for a credential header
// per URI and more; the bytes count names and values together, for the
// whole request. A push's records are bounded besides, whatever their
// qualifiers (maxRequestRecordBytes).
const (
	maxURIs           = 100
	maxURIBytes       = 8 << 10
	maxQualifiers     = 256
	maxQualifierBytes = 64 << 10
)

// checkRequest validates what every Fetch and Push request carries: at
// least one URI and at most maxURIs, none empty or over maxURIBytes, and
// at most maxQualifiers qualifiers, with names that are unique and not
// empty, whose names and values come to at most maxQualifierBytes. An
// empty request is INVALID_ARGUMENT, which is also how clients such as
// BuildStream probe for the service.
func checkRequest(uris []string, qs []*rapb.Qualifier) error {
	if len(uris) == 0 {
		return status.Error(codes.InvalidArgument, "uris: at least one URI is required")
	}
	if len(uris) > maxURIs {
		return status.Errorf(codes.InvalidArgument, "uris: %d URIs, more than the %d a request may name", len(uris), maxURIs)
	}
	for i, u := range uris {
		if strings.TrimSpace(u) == "" {
			return status.Errorf(codes.InvalidArgument, "uris[%d]: empty", i)
		}
		if len(u) > maxURIBytes {
			return status.Errorf(codes.InvalidArgument, "uris[%d]: %d bytes, more than the %d a URI may take", i, len(u), maxURIBytes)
		}
	}
	if len(qs) > maxQualifiers {
		return status.Errorf(codes.InvalidArgument, "qualifiers: %d qualifiers, more than the %d a request may carry", len(qs), maxQualifiers)
	}
	seen := map[string]bool{}
	total := 0
	for i, q := range qs {
		if q.Name == "" {
			return status.Errorf(codes.InvalidArgument, "qualifiers[%d].name: empty", i)
		}
		if seen[q.Name] {
			return status.Errorf(codes.InvalidArgument, "qualifiers[%d].name: %q appears twice; names must be unique", i, q.Name)
		}
		seen[q.Name] = true
		for _, f := range []struct{ field, s string }{{"name", q.Name}, {"value", q.Value}} {
			if total += len(f.s); total > maxQualifierBytes {
				return status.Errorf(codes.InvalidArgument, "qualifiers[%d].%s: %d bytes, which bring the qualifiers' names and values to %d, more than the %d a request's may take",
					i, f.field, len(f.s), total, maxQualifierBytes)
			}
		}
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
