package client

import (
	"slices"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// Each API version puts outputs and the platform where its servers look.
func TestActionSpecFieldsPerVersion(t *testing.T) {
	spec := ActionSpec{
		Arguments: []string{"cc"}, Environment: map[string]string{"PATH": "/bin", "A": "1"},
		OutputFiles: []string{"z.o", "a.o"}, OutputDirectories: []string{"gen"},
		OutputNodeProperties: []string{"mtime"},
		Platform:             map[string]string{"OSFamily": "Linux", "ISA": "x86-64"},
		InputRoot:            digest.Empty(repb.DigestFunction_SHA256),
	}
	parse := func(v APIVersion) (*repb.Action, *repb.Command) {
		ab, cb := spec.Build(v)
		a, c := &repb.Action{}, &repb.Command{}
		if err := proto.Unmarshal(ab.Data, a); err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(cb.Data, c); err != nil {
			t.Fatal(err)
		}
		if a.CommandDigest.Hash != cb.Digest.Hash() {
			t.Fatalf("%s: the Action does not name its Command", v)
		}
		return a, c
	}
	a, c := parse(V2_0)
	if !slices.Equal(c.OutputFiles, []string{"a.o", "z.o"}) || !slices.Equal(c.OutputDirectories, []string{"gen"}) ||
		len(c.OutputPaths) != 0 || len(c.OutputNodeProperties) != 0 || a.Platform != nil || len(c.Platform.GetProperties()) != 2 {
		t.Errorf("2.0: command %v, action platform %v", c, a.Platform)
	}
	a, c = parse(V2_1)
	if !slices.Equal(c.OutputPaths, []string{"a.o", "gen", "z.o"}) || len(c.OutputFiles) != 0 ||
		len(a.Platform.GetProperties()) != 2 || len(c.Platform.GetProperties()) != 2 || !slices.Equal(c.OutputNodeProperties, []string{"mtime"}) {
		t.Errorf("2.1: command %v, action platform %v", c, a.Platform)
	}
	a, c = parse(V2_2)
	if c.Platform != nil || len(a.Platform.GetProperties()) != 2 || a.Platform.Properties[0].Name != "ISA" {
		t.Errorf("2.2: command platform %v, action platform %v; want it in the Action only, sorted", c.Platform, a.Platform)
	}
	if c.EnvironmentVariables[0].Name != "A" {
		t.Errorf("environment not sorted by name: %v", c.EnvironmentVariables)
	}
	if _, err := ParseAPIVersion("3.0"); err == nil {
		t.Error("ParseAPIVersion(3.0) accepted")
	}
}

// Equal trees have equal digests whatever the order of adding; paths that
// leave the root are refused.
func TestTreeIsCanonical(t *testing.T) {
	b1, b2 := NewBlob([]byte("1")), NewBlob([]byte("2"))
	t1, t2 := NewTree(), NewTree()
	for _, err := range []error{t1.AddFile("a/x", b1, false), t1.AddFile("b", b2, true), t1.AddSymlink("a/l", "x"), t1.AddDir("empty")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range []error{t2.AddDir("empty"), t2.AddSymlink("a/l", "x"), t2.AddFile("b", b2, true), t2.AddFile("./a//x", b1, false)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	d1, blobs := t1.Build()
	d2, _ := t2.Build()
	if d1 != d2 || len(blobs) != 2+3 {
		t.Errorf("digests %s and %s, %d blobs; want equal digests and 5 blobs", d1, d2, len(blobs))
	}
	for _, p := range []string{"../x", "/abs", "a/../../x", "", "."} {
		if err := NewTree().AddFile(p, b1, false); err == nil {
			t.Errorf("AddFile(%q) accepted", p)
		}
	}
	if err := t1.AddFile("a/x", b2, false); err == nil {
		t.Error("the same path with other content accepted")
	}
	if err := t1.AddFile("b/y", b2, false); err == nil {
		t.Error("a file used as a directory accepted")
	}
}
