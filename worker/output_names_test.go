package worker

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/storage"
)

// endlessDir hands out 255-byte names in the batches asked for, without
// end, counting them.
type endlessDir struct{ given int }

func (d *endlessDir) Readdirnames(n int) ([]string, error) {
	if n <= 0 {
		n = 1 << 22 // "all": far more than a Tree takes
	}
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat("q", 255)
	}
	d.given += n
	return out, nil
}

// TestOutputNamesAreReadAgainstTheTreeBound: the names of an output
// directory are read in batches and refused once they would take the
// Tree past storage.MaxTreeBytes, so the worker never holds more names
// than a Tree can have plus one batch. Before, every name was read first
// (950,000 names of 255 bytes grew the worker by 450 MB).
func TestOutputNamesAreReadAgainstTheTreeBound(t *testing.T) {
	d := &endlessDir{}
	_, err := (&outputTree{}).readNames(d, "out")
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "Tree") {
		t.Fatalf("readNames: %v, want INVALID_ARGUMENT about the Tree's size", err)
	}
	if most := storage.MaxTreeBytes/(255+treeEntryBytes) + 4096; d.given > most {
		t.Errorf("%d names read, want at most %d", d.given, most)
	}
}

// nestedDir hands out n names, and then no more.
type nestedDir struct{ left int }

func (d *nestedDir) Readdirnames(n int) ([]string, error) {
	k := min(n, d.left)
	d.left -= k
	out := make([]string, k)
	for i := range out {
		out[i] = strings.Repeat("q", 255)
	}
	return out, nil
}

// TestNestedOutputNamesShareTheBound: names read at one level count while
// the levels below are read, so three directories each of 45% of the
// bound's names are refused at the third, not held all at once. Before,
// each level counted only its own names until they were walked (510,000
// names over three levels were in memory at once).
func TestNestedOutputNamesShareTheBound(t *testing.T) {
	tree := &outputTree{}
	per := int(storage.MaxTreeBytes * 45 / 100 / (255 + treeEntryBytes))
	for level := range 3 {
		_, err := tree.readNames(&nestedDir{left: per}, "out")
		if level < 2 && err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		if level == 2 && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("the third level: %v, want INVALID_ARGUMENT about the Tree's size", err)
		}
	}
}
