package asset

import (
	"context"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// requestMetadataHeader carries a serialized RequestMetadata (REv2), which
// names the client tool and its version.
const requestMetadataHeader = "build.bazel.remote.execution.v2.requestmetadata-bin"

// readsFetchStatus reports whether the client is known to look at the
// status inside a Fetch response, where the API puts failures outside the
// server's control (not found, checksum mismatch, origin refused …).
// Widely used clients do not: Bazel before 8.1 (bazelbuild/bazel#25244)
// downloads the response's empty digest and reports a checksum error
// about an empty file, and BuildStream 1.6 takes an empty root directory
// for the artifact instead of a cache miss. Every client handles a
// failed call, so the others get the same status as the call's error;
// only Bazel 8.1 and later, which reads it, gets it in the response.
func readsFetchStatus(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(requestMetadataHeader)
	if len(vals) == 0 {
		return false
	}
	rm := &repb.RequestMetadata{}
	if proto.Unmarshal([]byte(vals[0]), rm) != nil {
		return false
	}
	return bazelAtLeast81(rm.GetToolDetails().GetToolName(), rm.GetToolDetails().GetToolVersion())
}

// fetchReply applies readsFetchStatus to a Fetch call's answer, for both
// methods in one place: a response carrying a failure becomes the call's
// error unless the client reads it.
func fetchReply[R interface{ GetStatus() *rpcstatus.Status }](ctx context.Context, resp R, err error) (R, error) {
	if err == nil && resp.GetStatus().GetCode() != 0 && !readsFetchStatus(ctx) {
		var none R
		return none, status.FromProto(resp.GetStatus()).Err()
	}
	return resp, err
}

// bazelAtLeast81 is true for tool "bazel" with a release version of 8.1 or
// later ("8.1.0", "9.0.0rc2"). A Bazel without a version ("no_version":
// development builds, and Debian's bazel-bootstrap 4.2.3) does not count.
func bazelAtLeast81(tool, version string) bool {
	if tool != "bazel" {
		return false
	}
	major, rest, _ := strings.Cut(version, ".")
	minor, _, _ := strings.Cut(rest, ".")
	minor = strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' })
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > 8 || ma == 8 && mi >= 1
}
