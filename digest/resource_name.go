package digest

import (
	"slices"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2/instancename"
)

// SupportedCompressors are the compressors Paddock accepts in
// compressed-blobs/ resource names and batch requests.
var SupportedCompressors = []repb.Compressor_Value{repb.Compressor_ZSTD}

// ResourceName is a parsed ByteStream resource name for a CAS blob.
type ResourceName struct {
	// InstanceName may contain slashes; it is empty for the default instance.
	InstanceName string
	// UploadID is the {uuid} segment of a write; empty for reads.
	UploadID string
	// Compressor is IDENTITY for blobs/, or the compressor of compressed-blobs/.
	Compressor repb.Compressor_Value
	// Digest is of the uncompressed blob.
	Digest Digest
}

// ParseReadResourceName parses
// `{instance}/blobs/{digest_function/}{hash}/{size}` and
// `{instance}/compressed-blobs/{compressor}/{digest_function/}{hash}/{size}`.
func ParseReadResourceName(name string) (ResourceName, error) {
	return parseResourceName(name, false)
}

// ParseWriteResourceName parses
// `{instance}/uploads/{uuid}/blobs/{digest_function/}{hash}/{size}{/metadata}`
// and the compressed-blobs form.
func ParseWriteResourceName(name string) (ResourceName, error) {
	return parseResourceName(name, true)
}

func badName(name, why string) error {
	return status.Errorf(codes.InvalidArgument, "resource_name %q: %s", trunc(name), why)
}

func parseResourceName(name string, write bool) (ResourceName, error) {
	if name == "" {
		return ResourceName{}, badName(name, "is empty")
	}
	var rn ResourceName
	var rest []string
	var err error
	if rn.InstanceName, rest, err = splitInstance(name); err != nil {
		return ResourceName{}, err
	}
	if len(rest) == 0 {
		if write {
			return ResourceName{}, badName(name, "has no uploads/{uuid}/blobs/ part")
		}
		return ResourceName{}, badName(name, "has no blobs/ or compressed-blobs/ part")
	}
	if write {
		if rest[0] != "uploads" || len(rest) < 2 {
			return ResourceName{}, badName(name, "a write needs {instance}/uploads/{uuid}/blobs/...")
		}
		rn.UploadID = rest[1]
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return ResourceName{}, badName(name, "ends before blobs/")
	}
	switch rest[0] {
	case "blobs":
		rn.Compressor = repb.Compressor_IDENTITY
		rest = rest[1:]
	case "compressed-blobs":
		if len(rest) < 2 {
			return ResourceName{}, badName(name, "compressed-blobs/ needs a compressor")
		}
		c, ok := repb.Compressor_Value_value[strings.ToUpper(rest[1])]
		if !ok || rest[1] != strings.ToLower(rest[1]) || !slices.Contains(SupportedCompressors, repb.Compressor_Value(c)) {
			return ResourceName{}, badName(name, "unsupported compressor "+strconv.Quote(rest[1])+" (supported: zstd)")
		}
		rn.Compressor = repb.Compressor_Value(c)
		rest = rest[2:]
	default:
		return ResourceName{}, badName(name, "expected blobs/ or compressed-blobs/ after the instance name")
	}
	fn, rest, err := functionSegment(name, rest)
	if err != nil {
		return ResourceName{}, err
	}
	if len(rest) < 2 {
		return ResourceName{}, badName(name, "needs {hash}/{size}")
	}
	// Writes may carry optional metadata after the size; reads may not.
	if !write && len(rest) > 2 {
		return ResourceName{}, badName(name, "has segments after {size}")
	}
	size, err := strconv.ParseInt(rest[1], 10, 64)
	if err != nil || rest[1] != strconv.FormatInt(size, 10) {
		return ResourceName{}, badName(name, "size "+strconv.Quote(rest[1])+" is not a decimal integer")
	}
	d, err := New(fn, rest[0], size)
	if err != nil {
		return ResourceName{}, badName(name, status.Convert(err).Message())
	}
	rn.Digest = d
	return rn, nil
}

// functionSegment reads the optional {digest_function/} segment at the
// start of rest and returns the function (UNKNOWN when the segment is
// omitted, for New to infer from the hash length) and the segments after
// it. A segment that names a DigestFunction.Value in any case is taken as
// one (no hash is spelled like one), so that a wrong spelling is reported
// as such rather than as a hash: REv2 spells it in lowercase, and
// "unknown" names no function at all.
func functionSegment(name string, rest []string) (Function, []string, error) {
	if len(rest) == 0 {
		return repb.DigestFunction_UNKNOWN, rest, nil
	}
	v, ok := repb.DigestFunction_Value_value[strings.ToUpper(rest[0])]
	switch {
	case !ok:
		return repb.DigestFunction_UNKNOWN, rest, nil
	case rest[0] != strings.ToLower(rest[0]):
		return 0, nil, badName(name, "digest function segment "+strconv.Quote(rest[0])+" is not lowercase; REv2 names it "+strconv.Quote(strings.ToLower(rest[0])))
	case Function(v) == repb.DigestFunction_UNKNOWN:
		return 0, nil, badName(name, "digest function segment \"unknown\" names no digest function; omit the segment to have it inferred from the hash")
	}
	return Function(v), rest[1:], nil
}

// splitInstance splits name into its instance name and the segments after
// it, which start at the first segment REv2 reserves (none if there is
// no such segment). The instance name is checked with the very rule every
// RPC taking an instance_name applies (rev2.CheckInstanceName), so that
// every name those accept can be read and written here, and no other.
func splitInstance(name string) (string, []string, error) {
	segs := strings.Split(name, "/")
	i := 0
	for i < len(segs) && !instancename.IsReserved(segs[i]) {
		i++
	}
	if err := instancename.CheckSegments(segs[:i]); err != nil {
		return "", nil, badName(name, err.Error())
	}
	for _, s := range segs[i:] {
		if err := instancename.CheckSegment(s); err != nil {
			return "", nil, badName(name, err.Error())
		}
	}
	return strings.Join(segs[:i], "/"), segs[i:], nil
}

// String renders the resource name for a read (UploadID empty) or a write.
func (rn ResourceName) String() string {
	var b strings.Builder
	if rn.InstanceName != "" {
		b.WriteString(rn.InstanceName)
		b.WriteByte('/')
	}
	if rn.UploadID != "" {
		b.WriteString("uploads/")
		b.WriteString(rn.UploadID)
		b.WriteByte('/')
	}
	if rn.Compressor == repb.Compressor_IDENTITY {
		b.WriteString("blobs/")
	} else {
		b.WriteString("compressed-blobs/")
		b.WriteString(strings.ToLower(rn.Compressor.String()))
		b.WriteByte('/')
	}
	b.WriteString(rn.Digest.String())
	return b.String()
}
