package storage

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// requestScope is the first step of every CAS and action cache call: the
// instance name must be one ByteStream can address (rev2.CheckInstanceName),
// since blobs stored under any other could never be read back; the digest
// function must be one the server offers; and the instance is carried in
// the returned context, where the partitioned stores read it.
func requestScope(ctx context.Context, instance string, df repb.DigestFunction_Value) (context.Context, digest.Function, error) {
	if err := rev2.CheckInstanceName(instance); err != nil {
		return ctx, 0, err
	}
	fn, err := digest.CheckFunction(df)
	if err != nil {
		return ctx, 0, err
	}
	return WithInstance(ctx, instance), fn, nil
}
