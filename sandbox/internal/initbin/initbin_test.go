package initbin

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
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

// TestSourceDirsAreTheInitsPackages: the freshness digest covers every
// package of this module the init is built from, and the init links no
// RPC or protobuf code (it starts once per sandbox and must stay small).
func TestSourceDirsAreTheInitsPackages(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./sandbox/internal/initprog")
	cmd.Dir = "../../.."
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/paddock-build/paddock/"
	var own []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "grpc") || strings.Contains(pkg, "protobuf") {
			t.Errorf("the init links %s", pkg)
		}
		if dir, ok := strings.CutPrefix(pkg, module); ok {
			own = append(own, dir)
		}
	}
	sort.Strings(own)
	want := append([]string(nil), initsrc.SourceDirs...)
	sort.Strings(want)
	if !slices.Equal(own, want) {
		t.Fatalf("the init is built from %v; initsrc.SourceDirs lists %v", own, want)
	}
}
