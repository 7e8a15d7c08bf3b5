package asset

import (
	"context"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// requestMetadataHeader carries a serialized RequestMetadata (REv2), which
// names the client tool and its version.
const requestMetadataHeader = "build.bazel.remote.execution.v2.requestmetadata-bin"

// readsFetchStatus reports whether the client looks at
// FetchBlobResponse.status. Bazel before 8.1 does not (bazelbuild/bazel
// #25244): it downloads the response's blob_digest whatever the status,
// so a failed fetch reached the user as a checksum error about an empty
// file. Such clients get a failed fetch as the call's error instead,
// which every client reports; all others get it in the response, as the
// API specifies.
func readsFetchStatus(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(requestMetadataHeader)
	if len(vals) == 0 {
		return true
	}
	rm := &repb.RequestMetadata{}
	if proto.Unmarshal([]byte(vals[0]), rm) != nil {
		return true
	}
	return !bazelBefore81(rm.GetToolDetails().GetToolName(), rm.GetToolDetails().GetToolVersion())
}

// bazelBefore81 is true for tool "bazel" unless its version is a release
// of 8.1 or later. A Bazel without a version ("no_version": development
// builds, and Debian's bazel-bootstrap 4.2.3) counts as old: a call error
// is reported by every Bazel, an ignored status by none.
func bazelBefore81(tool, version string) bool {
	if tool != "bazel" {
		return false
	}
	major, rest, _ := strings.Cut(version, ".")
	minor, _, _ := strings.Cut(rest, ".")
	minor = strings.TrimRightFunc(minor, func(r rune) bool { return r < '0' || r > '9' })
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return true
	}
	return ma < 8 || ma == 8 && mi < 1
}
