package initbin

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/sandbox/internal/initsrc"
)

// TestBinaryFresh fails when the init's sources changed after the
// committed binary was compiled: run `make init`.
func TestBinaryFresh(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("no compiled init for " + runtime.GOARCH)
	}
	want, err := initsrc.SourcesDigest("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(BuiltFrom); got != want {
		t.Fatalf("the compiled init is stale (built from %s, sources are %s): run `make init`", got, want)
	}
	if !bytes.HasPrefix(Binary, []byte("\x7fELF")) || len(Binary) > 4<<20 {
		t.Fatalf("Binary is not a small ELF file (%d bytes)", len(Binary))
	}
}
