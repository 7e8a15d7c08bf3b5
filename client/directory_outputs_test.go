package client_test

import (
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// TestWriteOutputsFromDirectoryBlobs: a result whose output directory is
// stored as Directory blobs only (root_directory_digest, as for
// output_directory_format DIRECTORY_ONLY) is written out as a Tree would
// be, a subdirectory named twice included.
func TestWriteOutputsFromDirectoryBlobs(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	file, nested := client.NewBlob([]byte("f\n")), client.NewBlob([]byte("g\n"))
	sub := client.ProtoBlob(&repb.Directory{Files: []*repb.FileNode{{Name: "g", Digest: nested.Digest.Proto()}}})
	root := client.ProtoBlob(&repb.Directory{
		Files:       []*repb.FileNode{{Name: "f", Digest: file.Digest.Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub.Digest.Proto()}, {Name: "b", Digest: sub.Digest.Proto()}},
	})
	if _, err := c.Upload(t.Context(), []client.Blob{file, nested, sub, root}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", RootDirectoryDigest: root.Digest.Proto()}}}
	if err := c.WriteOutputs(t.Context(), dir, &repb.Command{OutputDirectories: []string{"out"}}, r); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"out/f": "f\n", "out/a/g": "g\n", "out/b/g": "g\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
}
