package grpclimit

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// maxDecodeOverhead is how much memory, beyond its own size, a request
// may take once decoded: eight times its size, and 64 KiB for small
// requests. Honest requests stay well below: a FindMissingBlobs of SHA-256
// digests takes 1.4 times its size more, a BatchUpdateBlobs of empty MD5
// blobs about 5 times, an ActionResult whose files carry mtimes about 7.
func maxDecodeOverhead(size int) int64 { return 8*int64(size) + 64<<10 }

// costCheckingCodec is grpc's proto codec with a check before each
// request is decoded: one whose decoded form would be out of proportion
// to its size is refused unread. proto.Unmarshal builds a Go struct for
// every message inside a request, however small it is on the wire: a
// FindMissingBlobs of 5 MiB holding 2.6 million empty digests took 260 MB
// and ten seconds of CPU to decode, so four such calls at once took
// `paddock up` from 26 MB to 1 GB, and a few dozen would have had it
// killed for memory, before any handler saw a digest.
type costCheckingCodec struct{ encoding.CodecV2 }

// decodeCodec checks every request a server decodes (see ServerOptions).
var decodeCodec = costCheckingCodec{encoding.GetCodecV2(protocodec.Name)}

func (c costCheckingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var m proto.Message
	switch v := v.(type) {
	case protoadapt.MessageV1:
		m = protoadapt.MessageV2Of(v)
	case proto.Message:
		m = v
	}
	if m == nil {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if err := checkDecodeCost(b, m); err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// checkDecodeCost refuses b, a request of m's type, if decoding it would
// take more than maxDecodeOverhead.
func checkDecodeCost(b []byte, m proto.Message) error {
	var cost decodeCost
	if err := cost.add(b, m.ProtoReflect().Descriptor(), 0); err != nil {
		return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	if over := cost.bytes(); over > maxDecodeOverhead(len(b)) {
		return fmt.Errorf("%s of %d bytes holds %d messages and %d repeated numbers, which would take about %d MB to decode, more than %d times its size: refused unread",
			m.ProtoReflect().Descriptor().FullName(), len(b), cost.messages, cost.scalars, over>>20, 8)
	}
	return nil
}

// codecOption makes a server decode through decodeCodec.
func codecOption() grpc.ServerOption { return grpc.ForceServerCodecV2(decodeCodec) }
