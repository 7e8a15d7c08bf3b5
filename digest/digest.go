// Package digest holds the validated Digest value used across Paddock and the
// small REv2 helpers that go with it (resource names, status details).
//
// A Digest is only ever built through a constructor that checks the hash
// length and alphabet for its function and a non-negative size, so the rest
// of the code never sees a malformed digest and never builds a path from one.
package digest

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Function is an REv2 digest function.
type Function = repb.DigestFunction_Value

// Supported lists the digest functions Paddock accepts, default first. All
// have distinct hash lengths, so a request that leaves the function unset
// (REv2 2.0 clients) can be resolved from the hash length alone.
var Supported = []Function{
	repb.DigestFunction_SHA256,
	repb.DigestFunction_SHA1,
	repb.DigestFunction_SHA384,
	repb.DigestFunction_SHA512,
}

// hexLen is the length in hex characters of each supported function's hash.
func hexLen(f Function) int {
	switch f {
	case repb.DigestFunction_SHA256:
		return 64
	case repb.DigestFunction_SHA1:
		return 40
	case repb.DigestFunction_SHA384:
		return 96
	case repb.DigestFunction_SHA512:
		return 128
	}
	return 0
}

// Digest identifies a blob: its digest function, lowercase hex hash and size.
// The zero value is not a valid digest; test with IsZero.
type Digest struct {
	fn   Function
	hash string
	size int64
}

// New validates its arguments and returns a Digest. When fn is UNKNOWN the
// function is inferred from the hash length. Errors are INVALID_ARGUMENT.
func New(fn Function, hash string, size int64) (Digest, error) {
	if fn == repb.DigestFunction_UNKNOWN {
		var err error
		if fn, err = inferFunction(hash); err != nil {
			return Digest{}, err
		}
	}
	n := hexLen(fn)
	if n == 0 {
		return Digest{}, status.Errorf(codes.InvalidArgument, "unsupported digest function %s", fn)
	}
	if len(hash) != n {
		return Digest{}, status.Errorf(codes.InvalidArgument, "digest hash %q has %d characters, %s needs %d", trunc(hash), len(hash), fn, n)
	}
	for i := 0; i < len(hash); i++ {
		c := hash[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return Digest{}, status.Errorf(codes.InvalidArgument, "digest hash %q is not lowercase hexadecimal", trunc(hash))
		}
	}
	if size < 0 {
		return Digest{}, status.Errorf(codes.InvalidArgument, "digest size_bytes %d is negative", size)
	}
	return Digest{fn: fn, hash: hash, size: size}, nil
}

func inferFunction(hash string) (Function, error) {
	for _, f := range Supported {
		if hexLen(f) == len(hash) {
			return f, nil
		}
	}
	return 0, status.Errorf(codes.InvalidArgument, "digest hash %q has %d characters, which matches no supported digest function", trunc(hash), len(hash))
}

// FromProto validates a wire digest. field names the request field for error
// messages, e.g. "blob_digests[3]".
func FromProto(fn Function, d *repb.Digest, field string) (Digest, error) {
	if d == nil {
		return Digest{}, status.Errorf(codes.InvalidArgument, "%s: digest is missing", field)
	}
	out, err := New(fn, d.Hash, d.SizeBytes)
	if err != nil {
		return Digest{}, status.Errorf(codes.InvalidArgument, "%s: %s", field, status.Convert(err).Message())
	}
	return out, nil
}

// CheckFunction validates the digest_function field of a request: a
// supported function is returned as is, UNKNOWN (unset, as REv2 2.0 clients
// send) is returned as is so that each hash's length decides, and anything
// else is INVALID_ARGUMENT.
func CheckFunction(fn Function) (Function, error) {
	if fn == repb.DigestFunction_UNKNOWN || hexLen(fn) != 0 {
		return fn, nil
	}
	return 0, status.Errorf(codes.InvalidArgument, "digest_function: %s is not supported", fn)
}

// Function returns the digest function.
func (d Digest) Function() Function { return d.fn }

// Hash returns the lowercase hex hash.
func (d Digest) Hash() string { return d.hash }

// SizeBytes returns the size of the blob.
func (d Digest) SizeBytes() int64 { return d.size }

// IsZero reports whether d is the zero value (not a valid digest).
func (d Digest) IsZero() bool { return d.hash == "" }

// Proto returns the wire form.
func (d Digest) Proto() *repb.Digest { return &repb.Digest{Hash: d.hash, SizeBytes: d.size} }

// String returns "hash/size", the form used in resource names and
// PreconditionFailure subjects (prefixed with "blobs/").
func (d Digest) String() string { return d.hash + "/" + strconv.FormatInt(d.size, 10) }

// NewHasher returns a fresh hash.Hash for d's function.
func (d Digest) NewHasher() hash.Hash { return NewHasher(d.fn) }

// NewHasher returns a fresh hash.Hash for fn (SHA-256 for UNKNOWN).
func NewHasher(fn Function) hash.Hash {
	switch fn {
	case repb.DigestFunction_SHA1:
		return sha1.New()
	case repb.DigestFunction_SHA384:
		return sha512.New384()
	case repb.DigestFunction_SHA512:
		return sha512.New()
	}
	return sha256.New()
}

// FromBytes computes the digest of data.
func FromBytes(fn Function, data []byte) Digest {
	if fn == repb.DigestFunction_UNKNOWN {
		fn = repb.DigestFunction_SHA256
	}
	h := NewHasher(fn)
	h.Write(data)
	return Digest{fn: fn, hash: hex.EncodeToString(h.Sum(nil)), size: int64(len(data))}
}

// FromReader computes the digest of everything r yields.
func FromReader(fn Function, r io.Reader) (Digest, error) {
	if fn == repb.DigestFunction_UNKNOWN {
		fn = repb.DigestFunction_SHA256
	}
	h := NewHasher(fn)
	n, err := io.Copy(h, r)
	if err != nil {
		return Digest{}, err
	}
	return Digest{fn: fn, hash: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// Empty returns the digest of the empty blob for fn. Every store treats it as
// present, as the spec requires.
func Empty(fn Function) Digest { return FromBytes(fn, nil) }

// IsEmpty reports whether d is the digest of the empty blob.
func (d Digest) IsEmpty() bool { return d.size == 0 && d == Empty(d.fn) }

func trunc(s string) string {
	if len(s) > 140 {
		return s[:140] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// MustParse builds a digest from "hash/size" with the function inferred; it
// panics on error and is meant for tests.
func MustParse(s string) Digest {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		panic(fmt.Sprintf("digest.MustParse(%q): no size", s))
	}
	size, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		panic(err)
	}
	d, err := New(repb.DigestFunction_UNKNOWN, s[:i], size)
	if err != nil {
		panic(err)
	}
	return d
}
