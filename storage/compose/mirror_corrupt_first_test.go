package compose_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// TestMirrorOfDisksServesTheSoundCopy: a blob whose first side's copy is
// found corrupt, read whole (a batch read, a GetTree's Directory, a
// cached result's stdout), is served from the second side's sound copy:
// the first disk found the damage only at the end of its copy and
// removed it, and the read was answered as if the blob were gone while
// the second side held it (outside probe).
func TestMirrorOfDisksServesTheSoundCopy(t *testing.T) {
	a, b := newDisk(t, 0), newDisk(t, 0)
	m := compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: a}, compose.Mirror{Name: "b", Store: b}, newRepairer(t), nil)
	data := bytes.Repeat([]byte("sound "), 1000)
	d := putBytes(t, m, data)
	p, ok := a.Path(d)
	if !ok {
		t.Fatal("the first side does not hold the blob")
	}
	damaged := bytes.Clone(data)
	damaged[len(damaged)-1] ^= 0xff // the end: found only once the copy has been read
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, damaged, 0o444); err != nil {
		t.Fatal(err)
	}
	got, err := storage.GetBytes(context.Background(), m, d, d.SizeBytes())
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a whole read of a blob whose first copy is corrupt: %d bytes, %v; want the second side's sound copy", len(got), err)
	}
}
