// Package decodecost tells what decoding a protobuf message would take in
// memory, from its wire form, before it is decoded. proto.Unmarshal
// builds a Go struct for every message inside another, however small it
// is on the wire: two bytes of an empty Digest become about 100 bytes of
// heap. Servers check requests with it (internal/grpclimit) and blobs
// read from the CAS (storage.GetProto), whose bytes come from clients too.
package decodecost

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// bytesPerDecodedMessage is what one message inside a request costs once
// decoded, beyond its bytes on the wire: the Go struct behind it (a
// Digest's is 64 bytes) and its pointer in the parent's slice, which
// doubles as the slice grows. Measured: 4,194,304 empty Digests, two
// bytes each on the wire, took 421 MB to decode, 100 bytes each.
const bytesPerDecodedMessage = 96

// bytesPerDecodedScalar is what one element of a repeated number field
// costs once decoded: 8 bytes for the widest, from one byte on the wire.
const bytesPerDecodedScalar = 8

// bytesPerDecodedString is what one element of a repeated string or bytes
// field costs once decoded, beyond its own bytes: its 16-byte header in
// the slice, which doubles as the slice grows. Measured: 200,000 empty
// strings, two bytes each on the wire, kept 3.3 MB live once decoded.
const bytesPerDecodedString = 24

// MinOverhead is what any message may take to decode beyond its size,
// however small: a request of a few bytes is never refused.
const MinOverhead = 64 << 10

// MaxDepth bounds how deeply a request's messages may nest; REv2's
// nest a few levels.
const MaxDepth = 64

// decodeCost is what a message of md's type takes in memory once decoded
// from b, beyond b itself (strings and bytes are copied, and counted by
// the caller as len(b)): each message inside it and each element of a
// repeated number field. It reads the wire format without decoding, so
// the cost of a request is known before the request is built: unknown
// fields are kept as raw bytes and cost nothing more.
type decodeCost struct {
	messages, scalars, strings int64
}

// bytes is the memory cost c stands for.
func (c decodeCost) bytes() int64 {
	return c.messages*bytesPerDecodedMessage + c.scalars*bytesPerDecodedScalar + c.strings*bytesPerDecodedString
}

// ErrTooDeep is the error of a message nested past MaxDepth.
var ErrTooDeep = fmt.Errorf("messages nested more than %d deep", MaxDepth)

// Check refuses b, the wire form of a message of m's type, if decoding it
// would take more than factor times its size (and MinOverhead) beyond the
// size itself, or if it is malformed or nested past MaxDepth. It reads b
// without decoding it, in time linear in its size; m is not changed.
func Check(b []byte, m proto.Message, factor int64) error {
	name := m.ProtoReflect().Descriptor().FullName()
	var cost decodeCost
	if err := cost.add(b, m.ProtoReflect().Descriptor(), 0); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if over := cost.bytes(); over > factor*int64(len(b))+MinOverhead {
		return fmt.Errorf("%s of %d bytes holds %d messages and %d repeated values, which would take about %s to decode, more than %d times its size: refused unread",
			name, len(b), cost.messages, cost.scalars+cost.strings, roughSize(over), factor)
	}
	return nil
}

// roughSize is n bytes in MB, or in KB below a megabyte (a small blob's
// cost read "about 0 MB").
func roughSize(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d MB", n>>20)
}

// add walks b, the wire form of a message of type md, and adds what it
// finds to c. A malformed b is an error; proto.Unmarshal would refuse it
// too.
func (c *decodeCost) add(b []byte, md protoreflect.MessageDescriptor, depth int) error {
	if depth > MaxDepth {
		return ErrTooDeep
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		val := b
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if fd == nil {
			continue // kept as unknown bytes
		}
		if err := c.addField(val[:n], typ, fd, depth); err != nil {
			return err
		}
	}
	return nil
}

// addField adds the cost of one field's value v, of wire type typ.
func (c *decodeCost) addField(v []byte, typ protowire.Type, fd protoreflect.FieldDescriptor, depth int) error {
	switch {
	case fd.IsMap():
		c.messages++ // the entry, decoded into the map
		inner, _ := protowire.ConsumeBytes(v)
		return c.add(inner, fd.Message(), depth+1)
	case fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType:
		c.messages++
		inner, _ := protowire.ConsumeBytes(v)
		return c.add(inner, fd.Message(), depth+1)
	case fd.Kind() == protoreflect.GroupKind:
		c.messages++ // REv2 has no groups; counted, not walked
	case fd.IsList() && (fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind):
		c.strings++
	case fd.IsList() && typ == protowire.BytesType:
		packed, _ := protowire.ConsumeBytes(v)
		c.scalars += packedCount(packed, fd.Kind())
	case fd.IsList():
		c.scalars++
	}
	return nil
}

// packedCount is how many elements a packed repeated field of kind k holds
// in b: a varint ends at each byte below 0x80.
func packedCount(b []byte, k protoreflect.Kind) int64 {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return int64(len(b) / 4)
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return int64(len(b) / 8)
	}
	var n int64
	for _, x := range b {
		if x < 0x80 {
			n++
		}
	}
	return n
}
