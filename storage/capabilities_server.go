package storage

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	smpb "github.com/bazelbuild/remote-apis/build/bazel/semver"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// capabilitiesServer answers GetCapabilities. low_api_version is 2.0 so that
// Bazel 2.x–4.x, which speak only REv2 2.0, are accepted; high_api_version is
// 2.13, the newest the generated code describes (its optional blob
// splitting and splicing are advertised as unsupported).
type capabilitiesServer struct {
	repb.UnimplementedCapabilitiesServer
	opts *ServerOptions
}

// GetCapabilities refuses an instance name ByteStream cannot address
// (rev2.CheckInstanceName): it is a client's first call, so a build with
// such a name fails at once instead of after running its actions.
func (s *capabilitiesServer) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	if err := rev2.CheckInstanceName(req.InstanceName); err != nil {
		return nil, err
	}
	// The spec: the values "pertain to" the instance, and so to what this
	// caller may do there: exec_enabled only with execute, so that a
	// client without it fails at once, not at its first Execute.
	// update_enabled stays true for every caller, a deliberate deviation:
	// Bazel (4.2.3 and later) refuses to build at all when it is false and
	// --remote_upload_local_results is on, its default, so every CI
	// identity without ac-write would need that flag; as it is, their
	// uploads are refused one by one, which Bazel reports as a warning.
	pr := auth.FromContext(ctx)
	may := func(p auth.Permission) bool { return pr == nil || pr.Allowed(p, req.InstanceName) }
	exec := s.opts.Execution
	if exec != nil && exec.ExecEnabled && !may(auth.Execute) {
		exec = proto.CloneOf(exec)
		exec.ExecEnabled = false
	}
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions: append([]repb.DigestFunction_Value(nil), digest.Supported...),
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{
				UpdateEnabled: true,
			},
			MaxBatchTotalSizeBytes:          s.opts.MaxBatchTotalSizeBytes,
			MaxCasBlobSizeBytes:             s.opts.MaxCASBlobBytes,
			SymlinkAbsolutePathStrategy:     repb.SymlinkAbsolutePathStrategy_DISALLOWED,
			SupportedCompressors:            []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		ExecutionCapabilities: exec,
		LowApiVersion:         &smpb.SemVer{Major: 2, Minor: 0},
		HighApiVersion:        &smpb.SemVer{Major: 2, Minor: 13},
	}, nil
}
