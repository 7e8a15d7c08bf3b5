package storage

import (
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// Trees must hold every directory they name: REv2's Tree.children is "all
// the child directories: the directories referred to by the root and,
// recursively, all of its children", and a client materialises an output
// directory by looking each DirectoryNode's digest up among them (Bazel
// fails the download when one is absent). An action cache entry whose Tree
// names a directory it lacks is a hit no client can use.

// treeFieldBytes returns the encodings, as written, of the Tree whose
// bytes are b (b has parsed as a Tree already): its root, the contents of
// every root field (1) concatenated, which protobuf parses as the one
// message they merge into; and each child (field 2). Digests are taken of
// these bytes, with no re-encoding that could differ from the writer's.
func treeFieldBytes(b []byte) (root []byte, children [][]byte) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return root, children
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return root, children
			}
			if num == 1 {
				root = append(root, v...)
			} else {
				children = append(children, v)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return root, children
		}
		b = b[m:]
	}
	return root, children
}

// checkTreeLinks checks that every DirectoryNode of a Tree's directories
// (dirs: its root, then its children) has a well-formed digest of fn that
// is the digest of one of the Tree's children (their encodings, from
// treeFieldBytes); INVALID_ARGUMENT naming field and the directory
// otherwise.
func checkTreeLinks(fn digest.Function, dirs []*repb.Directory, children [][]byte, field string) error {
	have := make(map[digest.Digest]bool, len(children))
	for _, c := range children {
		have[digest.FromBytes(fn, c)] = true
	}
	for i, d := range dirs {
		where := "root"
		if i > 0 {
			where = fmt.Sprintf("children[%d]", i-1)
		}
		for _, sub := range d.Directories {
			name := fmt.Sprintf("%s: Tree.%s: directory %s", field, where, rev2.Quote(sub.Name))
			sd, err := digest.FromProto(fn, sub.Digest, name)
			if err != nil {
				return err
			}
			if !have[sd] {
				return status.Errorf(codes.InvalidArgument, "%s is %s, which is not one of the Tree's children: a Tree holds every directory below its root", name, sd)
			}
		}
	}
	return nil
}
