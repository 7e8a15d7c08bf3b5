package decodecost

import (
	"errors"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// emptyEntries is the wire form of n empty entries of field 2 (a
// FindMissingBlobsRequest's blob_digests, a Command's environment).
func emptyEntries(field protowire.Number, n int) []byte {
	var b []byte
	for range n {
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = append(b, 0)
	}
	return b
}

// The walk counts what proto.Unmarshal builds: each message at any depth,
// each element of a repeated number field, packed or not, and each of a
// repeated string; it skips unknown fields, and refuses malformed bytes
// and nesting past MaxDepth.
func TestDecodeCostCounts(t *testing.T) {
	req := &repb.BatchReadBlobsRequest{
		Digests:               []*repb.Digest{{Hash: "a"}, {Hash: "b"}, {}},
		AcceptableCompressors: []repb.Compressor_Value{1, 2, 300},
	}
	b, _ := proto.Marshal(req)
	b = protowire.AppendTag(b, 99, protowire.BytesType) // unknown
	b = protowire.AppendBytes(b, emptyEntries(2, 50))
	var c decodeCost
	if err := c.add(b, req.ProtoReflect().Descriptor(), 0); err != nil {
		t.Fatal(err)
	}
	if c != (decodeCost{messages: 3, scalars: 3}) {
		t.Fatalf("cost %+v, want 3 messages and 3 numbers", c)
	}
	unpacked := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1)
	if c = (decodeCost{}); c.add(append(unpacked, unpacked...), req.ProtoReflect().Descriptor(), 0) != nil || c.scalars != 2 {
		t.Fatalf("two unpacked numbers: %+v", c)
	}
	if err := c.add(b[:len(b)-1], req.ProtoReflect().Descriptor(), 0); err == nil {
		t.Fatal("a cut message was walked")
	}
	cmd := &repb.Command{Arguments: []string{"", "a", "bb"}, OutputPaths: []string{"x"}}
	b, _ = proto.Marshal(cmd)
	if c = (decodeCost{}); c.add(b, cmd.ProtoReflect().Descriptor(), 0) != nil || c != (decodeCost{strings: 4}) {
		t.Fatalf("four repeated strings: %+v", c)
	}

	v := structpb.NewNullValue()
	for range MaxDepth + 1 {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	deep, _ := proto.Marshal(v)
	if err := Check(deep, v, 8); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("nested %d deep: %v", MaxDepth+1, err)
	}
}

// Check refuses past factor times the size plus MinOverhead, and names the
// type and what it holds. A Command of empty arguments, 2 bytes each on
// the wire and 16 in memory, was counted 8 bytes each and let through.
func TestCheckBound(t *testing.T) {
	cmd := &repb.Command{}
	big := emptyEntries(1, 1<<20) // a million empty arguments
	if err := Check(big, cmd, 8); err == nil || !strings.Contains(err.Error(), "build.bazel.remote.execution.v2.Command of 2097152 bytes") || !strings.Contains(err.Error(), "refused unread") {
		t.Fatalf("a million empty arguments: %v", err)
	}
	if err := Check(emptyEntries(2, 1<<20), cmd, 8); err == nil {
		t.Fatal("a million empty environment variables passed")
	}
	small := emptyEntries(2, 300) // 300 messages: 28 KiB, under MinOverhead
	if err := Check(small, cmd, 0); err != nil {
		t.Fatalf("a small Command: %v", err)
	}
}
