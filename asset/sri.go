package asset

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"
)

// checksum is a Subresource Integrity value (https://www.w3.org/TR/SRI/),
// the form Bazel sends in the checksum.sri qualifier: "sha256-BASE64".
type checksum struct {
	algorithm string
	sum       []byte
	newHash   func() hash.Hash
}

// parseSRI reads one SRI value (sha256, sha384 or sha512). A value listing
// several hashes, or options, is refused rather than half-checked.
func parseSRI(v string) (checksum, error) {
	if strings.ContainsAny(v, " \t?") {
		return checksum{}, fmt.Errorf("checksum.sri %q: only a single hash is supported", v)
	}
	alg, b64, ok := strings.Cut(v, "-")
	if !ok {
		return checksum{}, fmt.Errorf("checksum.sri %q: want ALGORITHM-BASE64", v)
	}
	c := checksum{algorithm: alg}
	size := 0
	switch alg {
	case "sha256":
		c.newHash, size = sha256.New, sha256.Size
	case "sha384":
		c.newHash, size = sha512.New384, sha512.Size384
	case "sha512":
		c.newHash, size = sha512.New, sha512.Size
	default:
		return checksum{}, fmt.Errorf("checksum.sri %q: algorithm %q is not one of sha256, sha384, sha512", v, alg)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != size {
		return checksum{}, fmt.Errorf("checksum.sri %q: not a base64 %s hash", v, alg)
	}
	c.sum = sum
	return c, nil
}

func (c checksum) String() string {
	return c.algorithm + "-" + base64.StdEncoding.EncodeToString(c.sum)
}
