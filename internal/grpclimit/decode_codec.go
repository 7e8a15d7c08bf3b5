package grpclimit

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/paddock-build/paddock/internal/decodecost"
)

// requestDecodeFactor is how many times its size, beyond its size, a
// request may take once decoded (and decodecost.MinOverhead for small
// ones). Honest requests stay well below: a FindMissingBlobs of SHA-256
// digests takes 1.4 times its size more, a BatchUpdateBlobs of empty MD5
// blobs about 5 times, an ActionResult whose files carry mtimes about 7.
const requestDecodeFactor = 8

// costCheckingCodec is grpc's proto codec with a check before each
// request is decoded: one whose decoded form would be out of proportion
// to its size is refused unread (decodecost). A FindMissingBlobs of 5 MiB
// holding 2.6 million empty digests took 260 MB and ten seconds of CPU to
// decode, so four such calls at once took `paddock up` from 26 MB to
// 1 GB, and a few dozen would have had it killed for memory, before any
// handler saw a digest.
//
// gRPC makes any error of a codec INTERNAL, which clients retry (Bazel
// with --remote_retries), though the refusal is certain to come again. So
// the codec leaves a refused request (too costly, or not a valid message)
// empty but for a mark (refusedField)
// carrying the reason, and refuseMarked, the innermost interceptor, ends
// the call with INVALID_ARGUMENT and that reason before any handler sees
// the request. A client that sends the mark itself only refuses its own
// request.
type costCheckingCodec struct{ encoding.CodecV2 }

// decodeCodec checks every request a server decodes (see ServerOptions).
var decodeCodec = costCheckingCodec{encoding.GetCodecV2(protocodec.Name)}

// refusedField is the field number of the mark: the largest there is, far
// past any REv2 message's fields.
const refusedField = protowire.MaxValidNumber

func (c costCheckingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := asMessage(v)
	if m == nil {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if err := checkDecodeCost(b, m); err != nil {
		markRefused(m, err.Error())
		return nil
	}
	// A request that is not a valid message (a string field that is not
	// UTF-8, say) is the client's error too: INVALID_ARGUMENT, not the
	// INTERNAL gRPC would make of it.
	if err := proto.Unmarshal(b, m); err != nil {
		markRefused(m, fmt.Sprintf("the request is not a valid %s: %v", m.ProtoReflect().Descriptor().FullName(), err))
	}
	return nil
}

// markRefused empties m but for the mark carrying why (refuseMarked).
func markRefused(m proto.Message, why string) {
	proto.Reset(m)
	mark := protowire.AppendTag(nil, refusedField, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendString(mark, why))
}

func asMessage(v any) proto.Message {
	switch v := v.(type) {
	case proto.Message:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}

// checkDecodeCost refuses b, a request of m's type, if decoding it would
// take more than requestDecodeFactor times its size.
func checkDecodeCost(b []byte, m proto.Message) error {
	return decodecost.Check(b, m, requestDecodeFactor)
}

// refusal is the reason the codec marked v refused, if it did.
func refusal(v any) (string, bool) {
	m := asMessage(v)
	if m == nil {
		return "", false
	}
	u := m.ProtoReflect().GetUnknown()
	if len(u) == 0 {
		return "", false
	}
	num, typ, n := protowire.ConsumeTag(u)
	if n < 0 || num != refusedField || typ != protowire.BytesType {
		return "", false
	}
	why, n := protowire.ConsumeString(u[n:])
	return why, n >= 0
}

// refuseMarked ends a unary call whose request the codec refused.
func refuseMarked(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if why, ok := refusal(req); ok {
		return nil, status.Error(codes.InvalidArgument, why)
	}
	return h(ctx, req)
}

// codecOptions make a server decode through decodeCodec.
func codecOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(decodeCodec), grpc.ChainUnaryInterceptor(refuseMarked)}
}
